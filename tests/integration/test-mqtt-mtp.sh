#!/bin/sh
# The MQTT binding of libusp against a real mosquitto (and a scripted fake
# broker for what a real one cannot show): builds
# tests/integration/mqtt_mtp_check.c against BUILD/libusp.a (with the same
# sanitizers), starts mosquitto on 127.0.0.1 on a free port with its own
# configuration in a temporary folder, and runs the driver's scenarios:
#   exchange   MQTT 5 and 3.1.1, QoS 1 and 0: records both ways with reply-to,
#              the agent's MQTTConnectRecord at the controller's topic,
#              oversized records refused, a clean close delivers a
#              DisconnectRecord; a tap subscriber checks the wire (Content
#              Type, Response Topic, the 3.1.1 "/reply-to=" suffix with %2F).
#   reconnect  MQTT 5 and 3.1.1: the broker is killed and restarted on the
#              same port: both connections come back within their back-off,
#              the agent sends a new MQTTConnectRecord, they exchange again.
#   resolve    a host name resolves off the loop; an unknown one gives DOWN.
#   fake       a fake broker checks the CONNECT (usp-endpoint-id, Request
#              Response Information, ClientId rules), answers with Assigned
#              Client Identifier, Response Information, subscribe-topic and
#              Maximum QoS, checks SUBSCRIBE and the PUBLISH, drops the
#              connection and checks the reconnect keeps the assigned id.
#   notopic    nothing to subscribe to: DISCONNECT and CLOSED [R-MQTT.16].
#   keepalive  a fake broker goes silent: PINGREQ on time (the timer wheel
#              drives mosquitto_loop_misc), then DOWN with reason keepalive.
#   unused     nothing listens: DOWN with reason connect, back-off between tries.
#   scale      1000 agents (half bound to 127.0.0.2): one fd per connection.
#   mqtts      a second mosquitto with TLS listeners (require_certificate) and
#              certificates from `uspsim certs`: exchange v5 and 3.1.1 and
#              3 MB records each way over TLS, idle without spinning; refused:
#              a client certificate from an unknown CA (broker side), a broker
#              from another CA, a broker certificate that does not name the
#              URL's host (IP and name), a fake server that never answers the
#              ClientHello (timeout, no spinning); 200 agents over TLS.
# Usage: sh tests/integration/test-mqtt-mtp.sh BUILD
# Prints one line per check; "mqtt-mtp: N passed, M failed"; non-zero on failure.
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3
passed=0
failed=0

say() { echo "mqtt-mtp: $*"; }
fail_setup() {
    say "$*"
    say "0 passed, 1 failed"
    exit 1
}

cd "$root" || fail_setup "cannot enter $root"
[ -f "$build/libusp.a" ] || fail_setup "no $build/libusp.a: build it first (make BUILD=$build)"
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$mosq" ] || fail_setup "mosquitto is missing (Debian: mosquitto)"
command -v mosquitto_sub >/dev/null 2>&1 || fail_setup "mosquitto_sub is missing (Debian: mosquitto-clients)"
pkg-config --exists libmosquitto || fail_setup "libmosquitto is missing (Debian: libmosquitto-dev)"
[ -x "$py" ] || fail_setup "$py is missing"

[ -x "$build/uspsim" ] || fail_setup "no $build/uspsim (for test certificates): build it first"

tmp=$(mktemp -d) || fail_setup "mktemp failed"
broker_pid=""
tls_broker_pid=""
tap_pid=""
fake_pid=""
stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}
cleanup() {
    stop_pid "$tap_pid"
    stop_pid "$fake_pid"
    stop_pid "$broker_pid"
    stop_pid "$tls_broker_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Generated headers from the same proto/ (see tests/wire/run).
mkdir -p "$tmp/gen"
protoc-c --proto_path=proto --c_out="$tmp/gen" proto/usp-msg-1-4.proto proto/usp-record-1-4.proto ||
    fail_setup "protoc-c failed on proto/"

# A sanitizer build of libusp needs the same runtime in the driver.
san=""
if command -v nm >/dev/null 2>&1; then
    syms=$(nm "$build/libusp.a" 2>/dev/null)
    case $syms in *__asan_*) san="address" ;; esac
    case $syms in *__ubsan_*) san="${san:+$san,}undefined" ;; esac
fi
sanflags=""
[ -n "$san" ] && sanflags="-fsanitize=$san -fno-omit-frame-pointer -fno-sanitize-recover=all"

drv="$tmp/mqtt_mtp_check"
# shellcheck disable=SC2046,SC2086 # flags are meant to split into words
if ! cc $sanflags -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -g \
        -Ilib/include -Ilib -I"$build/gen" -I"$tmp/gen" \
        $(pkg-config --cflags libprotobuf-c libuv libmosquitto) -o "$drv" \
        tests/integration/mqtt_mtp_check.c "$build/libusp.a" \
        $(pkg-config --libs libprotobuf-c libxml-2.0 libuv openssl libmosquitto) -lm -lpthread \
        >"$tmp/cc.log" 2>&1; then
    sed 's/^/    /' "$tmp/cc.log"
    fail_setup "cannot build tests/integration/mqtt_mtp_check.c"
fi
say "driver built${san:+ with -fsanitize=$san}"

free_port() {
    "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts on 127.0.0.1:$1 (up to 10 s).
wait_port() {
    "$py" - "$1" <<'EOF'
import socket, sys, time
end = time.time() + 10
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}

start_broker() {
    cat >"$tmp/mosquitto.conf" <<EOF
listener $1 127.0.0.1
allow_anonymous true
persistence false
log_dest file $tmp/broker.log
log_type all
set_tcp_nodelay true
EOF
    "$mosq" -c "$tmp/mosquitto.conf" >>"$tmp/broker.out" 2>&1 &
    broker_pid=$!
    wait_port "$1" || fail_setup "mosquitto did not accept on port $1: $(tail -n 5 "$tmp/broker.out" "$tmp/broker.log" 2>/dev/null)"
}

# run NAME COMMAND...: runs a driver scenario, shows its output, counts it.
run() {
    name=$1
    shift
    if "$@" >"$tmp/$name.out" 2>&1; then
        passed=$((passed + 1))
        say "PASS $name ($(grep -c '^ok ' "$tmp/$name.out") checks)"
        grep '^#' "$tmp/$name.out" | grep -v '^#    \[' | sed 's/^/    /'
    else
        failed=$((failed + 1))
        say "FAIL $name"
        sed 's/^/    /' "$tmp/$name.out" | tail -n 60
    fi
}

# check NAME CONDITION-COMMAND...: a check done by the script itself.
check() {
    name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        say "PASS $name"
    else
        failed=$((failed + 1))
        say "FAIL $name"
    fi
}

port=$(free_port)
start_broker "$port"
say "mosquitto $("$mosq" -h 2>/dev/null | head -n 1 | sed 's/.*version //') on 127.0.0.1:$port, pid $broker_pid"

# ---- exchange, with a tap on the wire ----
for v in 5 4; do
    if [ "$v" = 5 ]; then
        mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv5 -q 1 -i "tap$v" -t 'usp/#' \
            -F '%t|%C|%R|%q' >"$tmp/tap$v" 2>&1 &
    else
        mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv311 -q 1 -i "tap$v" -t 'usp/#' \
            -F '%t|%q' >"$tmp/tap$v" 2>&1 &
    fi
    tap_pid=$!
    i=0
    while ! grep -q "SUBACK to tap$v" "$tmp/broker.log" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    for q in 1 0; do
        run "exchange-v$v-qos$q" "$drv" exchange "$port" "$v" "$q"
    done
    sleep 0.3
    stop_pid "$tap_pid"
    tap_pid=""
    a="usp/agent/proto::agent-v$v"
    c="usp/controller/proto::ctl-v$v"
    if [ "$v" = 5 ]; then
        # Records to the agent carry the controller's topic as Response Topic, and
        # the other way round; all with Content Type usp.msg [R-MQTT.23, 27].
        check "wire-v5-to-agent" grep -q "^$a|usp.msg|$c|1\$" "$tmp/tap5"
        check "wire-v5-to-controller" grep -q "^$c|usp.msg|$a|1\$" "$tmp/tap5"
        check "wire-v5-qos0" grep -q "^$a|usp.msg|$c|0\$" "$tmp/tap5"
        check "wire-v5-no-other-content-type" sh -c "! grep -v '|usp.msg|' '$tmp/tap5'"
    else
        # "/reply-to=" with every "/" of the reply topic as %2F [R-MQTT.24/25].
        ca=$(echo "$c" | sed 's,/,%2F,g')
        aa=$(echo "$a" | sed 's,/,%2F,g')
        check "wire-v311-to-agent" grep -qF "$a/reply-to=$ca|1" "$tmp/tap4"
        check "wire-v311-to-controller" grep -qF "$c/reply-to=$aa|1" "$tmp/tap4"
        check "wire-v311-every-publish-has-reply-to" sh -c "! grep -v '/reply-to=' '$tmp/tap4'"
    fi
done

# ---- the broker dies and comes back on the same port ----
for v in 5 4; do
    : >"$tmp/reconnect$v.raw"
    "$drv" reconnect "$port" "$v" 1 >"$tmp/reconnect$v.raw" 2>&1 &
    drv_pid=$!
    i=0
    while ! grep -q KILL-BROKER-NOW "$tmp/reconnect$v.raw" && [ $i -lt 300 ] &&
        kill -0 "$drv_pid" 2>/dev/null; do
        sleep 0.05
        i=$((i + 1))
    done
    if grep -q KILL-BROKER-NOW "$tmp/reconnect$v.raw"; then
        kill -9 "$broker_pid"
        wait "$broker_pid" 2>/dev/null
        broker_pid=""
        start_broker "$port"
        say "broker killed and restarted on port $port (pid $broker_pid)"
    fi
    wait "$drv_pid"
    rc=$?
    drv_pid=""
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        say "PASS reconnect-v$v ($(grep -c '^ok ' "$tmp/reconnect$v.raw") checks)"
        grep '^#' "$tmp/reconnect$v.raw" | grep -v '^#    \[' | sed 's/^/    /'
        grep 'agent back' "$tmp/reconnect$v.raw" | sed 's/^#  */    /'
    else
        failed=$((failed + 1))
        say "FAIL reconnect-v$v"
        sed 's/^/    /' "$tmp/reconnect$v.raw" | tail -n 80
    fi
done

# ---- host names ----
run resolve "$drv" resolve "$port"

# ---- a fake broker that checks the bytes ----
cat >"$tmp/fake_broker.py" <<'EOF'
# Scripted MQTT server for one test client. argv: MODE VERSION PORTFILE EID
# MODE "full": CONNECT/CONNACK/SUBSCRIBE/SUBACK/PUBLISH, drop the connection,
# again, then wait for the client to go. MODE "notopic": expect DISCONNECT
# after a CONNACK that gives no topic.
import socket, sys

mode, version, portfile, eid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
bad = []

def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        bad.append(what)

def read_exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b

def read_packet(c):
    first = read_exact(c, 1)[0]
    mult, n = 1, 0
    while True:
        d = read_exact(c, 1)[0]
        n += (d & 127) * mult
        mult *= 128
        if not d & 128:
            break
    return first, read_exact(c, n)

def varint(b, i):
    mult, n = 1, 0
    while True:
        d = b[i]; i += 1
        n += (d & 127) * mult
        mult *= 128
        if not d & 128:
            return n, i

def utf8(b, i):
    n = b[i] << 8 | b[i + 1]
    return b[i + 2:i + 2 + n].decode(), i + 2 + n

BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
TWO = {0x13, 0x21, 0x22, 0x23}
FOUR = {0x02, 0x11, 0x18, 0x27}
STR = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
BIN = {0x09, 0x16}

def props(b, i):
    n, i = varint(b, i)
    end, out = i + n, []
    while i < end:
        pid = b[i]; i += 1
        if pid in BYTE: v = b[i]; i += 1
        elif pid in TWO: v = b[i] << 8 | b[i + 1]; i += 2
        elif pid in FOUR: v = int.from_bytes(b[i:i + 4], "big"); i += 4
        elif pid == 0x0B: v, i = varint(b, i)
        elif pid in STR: v, i = utf8(b, i)
        elif pid in BIN:
            n2 = b[i] << 8 | b[i + 1]; v = b[i + 2:i + 2 + n2]; i += 2 + n2
        elif pid == 0x26:
            k, i = utf8(b, i); v2, i = utf8(b, i); v = (k, v2)
        else:
            raise ValueError("unknown property %d" % pid)
        out.append((pid, v))
    return out, end

def enc_varint(n):
    out = b""
    while True:
        d = n % 128; n //= 128
        out += bytes([d | (128 if n else 0)])
        if not n:
            return out

def enc_str(s):
    s = s.encode()
    return len(s).to_bytes(2, "big") + s

def packet(first, body):
    return bytes([first]) + enc_varint(len(body)) + body

def enc_props(pl):
    b = b""
    for pid, v in pl:
        b += bytes([pid])
        if pid in BYTE: b += bytes([v])
        elif pid in STR: b += enc_str(v)
        elif pid == 0x26: b += enc_str(v[0]) + enc_str(v[1])
    return enc_varint(len(b)) + b

def read_connect(c):
    first, b = read_packet(c)
    expect(first == 0x10, "CONNECT first")
    name, i = utf8(b, 0)
    level, flags, keep = b[i], b[i + 1], b[i + 2] << 8 | b[i + 3]
    i += 4
    expect(name == "MQTT" and level == version, "protocol MQTT level %d (got %d)" % (version, level))
    expect(flags & 0x02, "clean start")
    expect(keep == 5, "Keep Alive = 5 s as configured [R-MQTT.14] (got %d)" % keep)
    pl = []
    if version == 5:
        pl, i = props(b, i)
    cid, i = utf8(b, i)
    return cid, pl

def session(c, n):
    cid, pl = read_connect(c)
    if version == 5:
        expect((0x19, 1) in pl, "Request Response Information = 1 [R-MQTT.12]")
        expect((0x26, ("usp-endpoint-id", eid)) in pl,
               "user property usp-endpoint-id = %s [R-MQTT.13]" % eid)
        if n == 1:
            expect(cid == "", "empty ClientId when none is configured (MQTT 5) [R-MQTT.9]")
        else:
            expect(cid == "fake-assigned-1",
                   "reconnect keeps the Assigned Client Identifier [R-MQTT.9] (got %r)" % cid)
        ack = [(0x1A, "usp/resp/fake"), (0x26, ("subscribe-topic", "usp/extra/fake")), (0x24, 0)]
        if n == 1:
            ack.insert(0, (0x12, "fake-assigned-1"))
        c.sendall(packet(0x20, b"\x00\x00" + enc_props(ack)))
    else:
        expect(cid == eid, "ClientId = Endpoint ID (MQTT 3.1.1) [R-MQTT.11] (got %r)" % cid)
        expect(pl == [], "no properties in 3.1.1")
        c.sendall(packet(0x20, b"\x00\x00"))
    first, b = read_packet(c)
    expect(first == 0x82, "SUBSCRIBE follows CONNACK (got 0x%02x)" % first)
    pid = b[0] << 8 | b[1]
    i = 2
    if version == 5:
        _, i = props(b, i)
    subs = []
    while i < len(b):
        t, i = utf8(b, i)
        subs.append((t, b[i] & 3)); i += 1
    own = "usp/agent/" + eid
    if version == 5:
        want = [(own, 0), ("usp/extra/fake", 0), ("usp/resp/fake", 0)]
        expect(subs == want, "SUBSCRIBE to own topic, subscribe-topic and Response Information, "
               "QoS capped by Maximum QoS 0 [R-MQTT.15] (got %r)" % subs)
        c.sendall(packet(0x90, pid.to_bytes(2, "big") + b"\x00" + bytes(len(subs))))
    else:
        expect(subs == [(own + "/#", 1)], "3.1.1 SUBSCRIBE to own topic/# at QoS 1 (got %r)" % subs)
        c.sendall(packet(0x90, pid.to_bytes(2, "big") + b"\x01"))
    first, b = read_packet(c)
    expect(first & 0xF0 == 0x30, "PUBLISH (the MQTTConnectRecord) after SUBACK [R-MQTT.17]")
    q = (first >> 1) & 3
    topic, i = utf8(b, 0)
    if q:
        mid = b[i:i + 2]; i += 2
    if version == 5:
        expect(q == 0, "PUBLISH at QoS 0: Maximum QoS respected (got %d)" % q)
        expect(topic == "usp/controller/fake", "PUBLISH to the controller's topic (got %r)" % topic)
        pl, i = props(b, i)
        expect((0x08, "usp/resp/fake") in pl, "Response Topic = Response Information [R-MQTT.21/23]")
        expect((0x03, "usp.msg") in pl, "Content Type usp.msg [R-MQTT.27]")
        expect(b"usp/resp/fake" in b[i:], "MQTTConnectRecord.subscribed_topic is the reply-to")
    else:
        expect(q == 1, "PUBLISH at QoS 1 (got %d)" % q)
        want = "usp/controller/fake/reply-to=" + own.replace("/", "%2F")
        expect(topic == want, "3.1.1 topic with the reply-to suffix (got %r)" % topic)
        expect(own.encode() in b[i:], "MQTTConnectRecord.subscribed_topic is the own topic")
        try:
            c.sendall(packet(0x40, mid))
        except OSError:
            pass  # the client may be closing already (it closes when UP the second time)

def silent(c):
    import time
    session(c, 1)
    t0 = time.time()
    c.settimeout(20)
    first, b = read_packet(c)
    t = time.time() - t0
    expect(first == 0xC0, "PINGREQ when idle (got 0x%02x)" % first)
    expect(3.9 <= t <= 7.0, "PINGREQ %.2f s after the last packet (keepalive 5 s, checked "
           "every 1.25 s)" % t)
    print("#    PINGREQ %.2f s after the client's last packet" % t)
    try:
        read_packet(c)
        expect(False, "nothing but silence after an unanswered PINGREQ")
    except EOFError:
        t = time.time() - t0
        expect(8.0 <= t <= 14.0, "the client gives up %.2f s after the last packet" % t)

def notopic(c):
    cid, pl = read_connect(c)
    c.sendall(packet(0x20, b"\x00\x00\x00"))
    first, b = read_packet(c)
    expect(first == 0xE0, "DISCONNECT when there is nothing to subscribe to [R-MQTT.16] "
           "(got 0x%02x)" % first)
    try:
        read_packet(c)
        expect(False, "the client closes after DISCONNECT")
    except EOFError:
        expect(True, "the client closes after DISCONNECT")

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(5)
srv.settimeout(20)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.getsockname()[1]))
import os
os.rename(portfile + ".tmp", portfile)
try:
    if mode == "notopic":
        c, _ = srv.accept(); c.settimeout(10)
        notopic(c)
    elif mode == "silent":
        c, _ = srv.accept(); c.settimeout(10)
        silent(c)
    else:
        c, _ = srv.accept(); c.settimeout(10)
        session(c, 1)
        c.close()  # the connection is lost
        c, _ = srv.accept(); c.settimeout(10)
        session(c, 2)
        try:
            while True:
                read_packet(c)
        except (EOFError, ConnectionResetError):
            pass
except Exception as e:
    expect(False, "fake broker: %r" % e)
print("fake broker: %d failure(s)" % len(bad), flush=True)
sys.exit(1 if bad else 0)
EOF

fake() {
    fname=$1 mode=$2 v=$3 eid=$4 scenario=$5
    rm -f "$tmp/fake.port"
    "$py" "$tmp/fake_broker.py" "$mode" "$v" "$tmp/fake.port" "$eid" >"$tmp/$fname.fake" 2>&1 &
    fake_pid=$!
    i=0
    while [ ! -s "$tmp/fake.port" ] && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    run "$fname-client" "$drv" "$scenario" "$(cat "$tmp/fake.port" 2>/dev/null || echo 1)" "$v"
    wait "$fake_pid"
    rc=$?
    fake_pid=""
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        say "PASS $fname-broker-side ($(grep -c '^ok ' "$tmp/$fname.fake") checks)"
        grep '^#' "$tmp/$fname.fake" | sed 's/^/    /'
    else
        failed=$((failed + 1))
        say "FAIL $fname-broker-side"
        sed 's/^/    /' "$tmp/$fname.fake"
    fi
}
fake fake-v5 full 5 proto::fake-v5 fake
fake fake-v311 full 4 proto::fake-v4 fake
fake notopic-v5 notopic 5 proto::notopic-v5 notopic
fake keepalive-v5 silent 5 proto::keepalive-v5 keepalive

# ---- nothing listening ----
run unused-port "$drv" unused-port "$(free_port)" 5

# ---- many agents: fds and memory ----
run scale-1000 "$drv" scale "$port" 1000

stop_pid "$broker_pid"
broker_pid=""

# ---- mqtts ----
"$build/uspsim" certs --out "$tmp/pki" --agents 2 --controller-id proto::ctl-v5 >"$tmp/certs.log" 2>&1 &&
    "$build/uspsim" certs --out "$tmp/pki2" --agents 1 >>"$tmp/certs.log" 2>&1 ||
    fail_setup "uspsim certs failed: $(tail -n 3 "$tmp/certs.log")"
tp1=$(free_port)
tp2=$(free_port)
tp3=$(free_port)
while [ "$tp2" = "$tp1" ]; do tp2=$(free_port); done
while [ "$tp3" = "$tp1" ] || [ "$tp3" = "$tp2" ]; do tp3=$(free_port); done
pki=$tmp/pki
# As root, mosquitto would become user "mosquitto", who cannot read the
# keys in our private temporary folder: it stays who we are.
cat >"$tmp/mosquitto-tls.conf" <<EOF
user $(id -un)
allow_anonymous true
persistence false
log_dest file $tmp/tls-broker.log
log_type all
set_tcp_nodelay true
# The broker's own certificate from our CA; clients must present one too.
listener $tp1 127.0.0.1
cafile $pki/ca.pem
certfile $pki/broker.pem
keyfile $pki/broker.key
require_certificate true
# A certificate from our CA that names neither 127.0.0.1 nor localhost.
listener $tp2 127.0.0.1
cafile $pki/ca.pem
certfile $pki/agents/2.pem
keyfile $pki/agents/2.key
require_certificate true
# A broker certificate from another CA.
listener $tp3 127.0.0.1
cafile $pki/ca.pem
certfile $tmp/pki2/broker.pem
keyfile $tmp/pki2/broker.key
require_certificate true
EOF
"$mosq" -c "$tmp/mosquitto-tls.conf" >>"$tmp/tls-broker.out" 2>&1 &
tls_broker_pid=$!
for p in $tp1 $tp2 $tp3; do
    wait_port "$p" || fail_setup "mosquitto (TLS) did not accept on port $p: $(tail -n 5 "$tmp/tls-broker.out" "$tmp/tls-broker.log" 2>/dev/null)"
done
say "mosquitto with TLS on 127.0.0.1:$tp1 (ours), :$tp2 (wrong name), :$tp3 (other CA), pid $tls_broker_pid"

run mqtts-exchange-v5 env MQTT_TLS_DIR="$pki" "$drv" exchange "$tp1" 5 1
run mqtts-exchange-v311 env MQTT_TLS_DIR="$pki" "$drv" exchange "$tp1" 4 1
run mqtts-bulk env MQTT_TLS_DIR="$pki" "$drv" tls-bulk "$tp1" 5
run mqtts-client-unknown-ca env MQTT_TLS_DIR="$pki" MQTT_TLS_CERT="$tmp/pki2/agents/1" \
    "$drv" tls-refused "$tp1" "TLS handshake with 127.0.0.1 port $tp1 failed: "
# Its words: "tlsv1 alert unknown ca (sent by the broker: did it refuse our
# certificate?)" when the alert is read, or, when the broker's close comes
# first, "the connection ended during or right after the handshake ...".
check mqtts-client-unknown-ca-words grep -q "refuse our certificate" "$tmp/mqtts-client-unknown-ca.out"
check mqtts-broker-refused-the-client-certificate \
    grep -q "certificate verify failed" "$tmp/tls-broker.log"
run mqtts-broker-other-ca env MQTT_TLS_DIR="$pki" "$drv" tls-refused "$tp3" \
    "the broker's certificate did not verify: unable to get local issuer certificate"
run mqtts-host-mismatch-ip env MQTT_TLS_DIR="$pki" "$drv" tls-refused "$tp2" \
    "the broker's certificate did not verify: IP address mismatch"
run mqtts-host-mismatch-name env MQTT_TLS_DIR="$pki" MQTT_TLS_HOST=localhost "$drv" tls-refused \
    "$tp2" "the broker's certificate did not verify: hostname mismatch"
run mqtts-trusted-name env MQTT_TLS_DIR="$pki" MQTT_TLS_HOST=localhost "$drv" tls-bulk "$tp1"

# A fake server (deliberately broken): accepts and never answers the ClientHello.
cat >"$tmp/silent.py" <<'EOF'
import os, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(5)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.settimeout(15)
c, _ = s.accept()
time.sleep(6)
EOF
rm -f "$tmp/silent.port"
"$py" "$tmp/silent.py" "$tmp/silent.port" >/dev/null 2>&1 &
fake_pid=$!
i=0
while [ ! -s "$tmp/silent.port" ] && [ $i -lt 100 ]; do
    sleep 0.05
    i=$((i + 1))
done
run mqtts-silent-server env MQTT_TLS_DIR="$pki" "$drv" tls-stall "$(cat "$tmp/silent.port" 2>/dev/null || echo 1)"
stop_pid "$fake_pid"
fake_pid=""

run mqtts-scale-200 env MQTT_TLS_DIR="$pki" "$drv" scale "$tp1" 200

stop_pid "$tls_broker_pid"
tls_broker_pid=""
say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/sh
# The WebSocket binding of libusp (libwebsockets 4.1 on the libuv loop)
# against itself and against deliberately broken raw peers: builds
# tests/integration/ws_mtp_check.c against BUILD/libusp.a (with the same
# sanitizers) and runs its scenarios on 127.0.0.1 with free ports:
#   exchange     agent client <-> controller listener, agent listener <->
#                controller client: WebSocketConnectRecord first, records
#                both ways, the eid query with "%" as %25, a 60000-byte record
#                intact, oversize refused/dropped, 12 s idle with 5 s
#                keepalive (pings answered), graceful closes with
#                DisconnectRecords.
#   dup          one session per pair of Endpoint IDs [R-WS.4] (replace, and
#                refuse while an own connection is up); usp_mtp_reject closes
#                with 1003 [R-WS.16]; reconnect after the back-off.
#   unused-port  nothing listens: DOWN with reason connect, back-off.
#   raw-clients  a raw fake client against our listener: no or wrong
#                subprotocol or path refused [R-WS.12a], v1.usp answered
#                [R-WS.11], WebSocketConnectRecord first, ping/pong,
#                fragments (with a ping between them) reassembled [R-WS.14b],
#                oversized message dropped, text frame closed with 1003
#                [R-WS.16], deprecated bbf-usp-protocol extension answered
#                [R-WS.10a/11a], close handshake.
#   broken-server  a fake server that never agrees to v1.usp: the client
#                refuses it [R-WS.12], the request carries eid=...%25...,
#                v1.usp and Host; the retry waits for the back-off.
#   silent-server  a fake server that stops answering: ping after 5 s,
#                DOWN with reason keepalive after 10 s [R-WS.17/18].
#   restart      a controller process is killed (-9) and started again on
#                the same port: the agent comes back within its back-off.
#   scale-1000   1000 agent clients and their accepted sessions in one
#                process: time, file descriptors and heap per session.
#   wss          wss:// with certificates from BUILD/uspsim certs both ways
#                [R-MTP.1, R-SEC.0a]: agent client <-> controller listener and
#                controller client <-> agent listener, records both ways (one
#                of 300000 bytes), usp_mtp_peer_ids and the listener's
#                peer.ids holding the peer's Endpoint ID; refused: a client
#                certificate from an unknown CA (by the listener), an "eid"
#                its certificate does not name (403), a server certificate
#                from an unknown CA and one for another host (by the client,
#                OpenSSL's reason in the DOWN detail), our own certificate
#                missing; configuration errors.
#   wss-scale-100  100 agents, each with its own certificate, to one wss
#                listener in one process: time and heap per session.
# Usage: sh tests/integration/test-ws-mtp.sh BUILD
# Prints one line per check; "ws-mtp: N passed, M failed"; non-zero on failure.
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3
passed=0
failed=0

say() { echo "ws-mtp: $*"; }
fail_setup() {
    say "$*"
    say "0 passed, 1 failed"
    exit 1
}

cd "$root" || fail_setup "cannot enter $root"
[ -f "$build/libusp.a" ] || fail_setup "no $build/libusp.a: build it first (make BUILD=$build)"
pkg-config --exists libwebsockets || fail_setup "libwebsockets is missing (Debian: libwebsockets-dev)"
[ -x "$py" ] || fail_setup "$py is missing"

tmp=$(mktemp -d) || fail_setup "mktemp failed"
pids=""
stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}
cleanup() {
    for p in $pids; do
        stop_pid "$p"
    done
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

drv="$tmp/ws_mtp_check"
# shellcheck disable=SC2046,SC2086 # flags are meant to split into words
if ! cc $sanflags -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow \
        -Wstrict-prototypes -g -Ilib/include -Ilib -I"$build/gen" -I"$tmp/gen" \
        $(pkg-config --cflags libprotobuf-c libuv libwebsockets) -o "$drv" \
        tests/integration/ws_mtp_check.c "$build/libusp.a" \
        $(pkg-config --libs libprotobuf-c libxml-2.0 libuv openssl libmosquitto libwebsockets) \
        -lm -lpthread >"$tmp/cc.log" 2>&1; then
    sed 's/^/    /' "$tmp/cc.log"
    fail_setup "cannot build tests/integration/ws_mtp_check.c"
fi
say "driver built${san:+ with -fsanitize=$san}"

free_port() {
    "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for FILE TEXT [SECONDS]: until TEXT is in FILE (0) or the time is up (1).
wait_for() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -ge $((${3:-10} * 20)) ] && return 1
        sleep 0.05
    done
    return 0
}

# count NAME RC LOG: counts a finished run, shows its notes or its failures.
count() {
    if [ "$2" -eq 0 ]; then
        passed=$((passed + 1))
        say "PASS $1 ($(grep -c '^ok ' "$3") checks)"
        grep '^#' "$3" | grep -v '^#    \[' | sed 's/^/    /'
    else
        failed=$((failed + 1))
        say "FAIL $1"
        grep -v '^ok ' "$3" | sed 's/^/    /' | tail -n 60
    fi
}

# run NAME COMMAND...: runs a driver scenario and counts it.
run() {
    name=$1
    shift
    "$@" >"$tmp/$name.out" 2>&1
    count "$name" $? "$tmp/$name.out"
}

cat >"$tmp/fake_ws.py" <<'PYEOF'
# Raw WebSocket peers for tests/integration/test-ws-mtp.sh, written against
# RFC 6455 with plain sockets so that they can do what a correct library
# would not. argv: MODE ...
#   clients PORT          raw clients against the binding's listener (agent
#                         role, eid proto::agent-srv, max_record 4096, /usp)
#   broken PORTFILE EID   a deliberately broken server that never agrees to
#                         subprotocol v1.usp (a correct client must refuse it)
#   silent PORTFILE EID   a server that does the handshake right, then never
#                         answers a ping
# Prints "ok ..." / "FAIL ..." per check, "#" notes; exits 1 on any failure.
import base64, hashlib, os, socket, struct, sys, time

bad = []
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        bad.append(what)


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Conn:
    """A socket with a read buffer: what arrives with the HTTP head stays."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        b, self.buf = self.buf[:n], self.buf[n:]
        return b

    def sendall(self, b):
        self.sock.sendall(b)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def read_exact(s, n):
    return s.read_exact(n)


def read_frame(s):
    """One frame: (fin, opcode, payload, masked)."""
    h = read_exact(s, 2)
    fin, op = h[0] >> 7, h[0] & 15
    masked, n = h[1] >> 7, h[1] & 127
    if n == 126:
        n = struct.unpack(">H", read_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read_exact(s, 8))[0]
    mask = read_exact(s, 4) if masked else b"\0\0\0\0"
    p = read_exact(s, n)
    if masked:
        p = bytes(c ^ mask[i % 4] for i, c in enumerate(p))
    return fin, op, p, masked


def frame(op, payload, fin=True, mask=True):
    b = bytes([(0x80 if fin else 0) | op])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        b += bytes([m | n])
    elif n < 65536:
        b += bytes([m | 126]) + struct.pack(">H", n)
    else:
        b += bytes([m | 127]) + struct.pack(">Q", n)
    if not mask:
        return b + payload
    k = os.urandom(4)
    return b + k + bytes(c ^ k[i % 4] for i, c in enumerate(payload))


def read_head(s):
    try:
        while b"\r\n\r\n" not in s.buf:
            s.fill()
    except EOFError:
        pass
    head, _, rest = s.buf.partition(b"\r\n\r\n")
    s.buf = rest
    head = head.decode("latin-1")
    lines = head.split("\r\n")
    hdrs = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return (lines[0] if lines and lines[0] else ""), hdrs


def hdr(hdrs, name):
    v = hdrs.get(name.lower())
    return ", ".join(v) if v else None


# ---- raw clients against our listener ----

def handshake(port, path, proto=None, ext=None, upgrade=True):
    s = Conn(socket.create_connection(("127.0.0.1", port), timeout=5))
    key = base64.b64encode(os.urandom(16)).decode()
    req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (path, port)
    if upgrade:
        req += ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                "Sec-WebSocket-Version: 13\r\n" % key)
    if proto:
        req += "Sec-WebSocket-Protocol: %s\r\n" % proto
    if ext:
        req += "Sec-WebSocket-Extensions: %s\r\n" % ext
    s.sendall((req + "\r\n").encode())
    try:
        status, hdrs = read_head(s)
    except (socket.timeout, ConnectionResetError):
        status, hdrs = "", {}
    return s, key, status, hdrs


def refused(port, path, proto, what, forbidden):
    s, _, status, _ = handshake(port, path, proto)
    expect(" 101 " not in status + " ", "%s: no session (answer: %r)" % (what, status or "connection closed"))
    if forbidden:
        expect(" 403 " in status + " ", "%s: refused with HTTP 403 by the binding" % what)
    s.close()


def first_record(s, peer):
    fin, op, p, masked = read_frame(s)
    expect(fin and op == 2 and not masked, "first frame from the server: one unmasked binary "
           "frame (fin %d, opcode %d)" % (fin, op))
    expect(b"\x4a\x00" in p and b"proto::agent-srv" in p and peer.encode() in p,
           "it is a WebSocketConnectRecord from proto::agent-srv to %s [R-MTP.6]" % peer)


def next_data(s):
    """The next data frame, answering nothing; pongs are returned too."""
    while True:
        fin, op, p, masked = read_frame(s)
        if op in (1, 2, 8, 10):
            return fin, op, p


def clients(port):
    refused(port, "/usp?eid=proto::py-a", None, "no Sec-WebSocket-Protocol [R-WS.12a]", True)
    # libwebsockets itself drops a request naming only protocols it lacks.
    refused(port, "/usp?eid=proto::py-b", "foo", "only subprotocol foo [R-WS.12a]", False)
    refused(port, "/other?eid=proto::py-c", "v1.usp", "another resource path [R-WS.2]", True)
    s, _, status, _ = handshake(port, "/usp", None, None, upgrade=False)
    expect(" 101 " not in status + " ", "a plain HTTP GET: no session (%r)" % (status or "closed"))
    s.close()

    # A good session, with the subprotocol second in the list.
    s, key, status, hdrs = handshake(port, "/usp?x=1&eid=proto::py-ctl", "foo, v1.usp")
    expect(" 101 " in status, "foo, v1.usp: 101 (%r)" % status)
    expect(hdr(hdrs, "sec-websocket-protocol") == "v1.usp",
           "the server answers Sec-WebSocket-Protocol: v1.usp [R-WS.11] (%r)"
           % hdr(hdrs, "sec-websocket-protocol"))
    expect(hdr(hdrs, "sec-websocket-accept") == accept_key(key), "Sec-WebSocket-Accept is right")
    expect(hdr(hdrs, "sec-websocket-extensions") is None,
           "no extension answer to a client that asked for none")
    first_record(s, "proto::py-ctl")
    s.sendall(frame(9, b"py"))
    fin, op, p = next_data(s)
    expect(op == 10 and p == b"py", "a ping is answered with a pong carrying its data [R-WS.17]")
    # Fragmented, with a ping between the fragments [R-WS.14b].
    s.sendall(frame(2, b"hello-", fin=False) + frame(9, b"mid") +
              frame(0, b"fragmented-", fin=False) + frame(0, b"world"))
    fin, op, p = next_data(s)
    expect(op == 10 and p == b"mid", "the ping between fragments is answered")
    fin, op, p = next_data(s)
    expect(fin and op == 2 and p == b"hello-fragmented-world",
           "the three fragments arrived as one record (echoed: %r)" % p[:40])
    # More than max_record (4096) in fragments: dropped, the session stays.
    big = os.urandom(2000)
    s.sendall(frame(2, big, fin=False) + frame(0, big, fin=False) + frame(0, big))
    s.sendall(frame(2, b"after-oversize"))
    fin, op, p = next_data(s)
    expect(op == 2 and p == b"after-oversize",
           "a 6000-byte message over max_record is dropped, the next one arrives (%r)" % p[:20])
    # A text frame: close with 1003 [R-WS.16].
    s.sendall(frame(1, b"not a record"))
    fin, op, p = next_data(s)
    code = struct.unpack(">H", p[:2])[0] if op == 8 and len(p) >= 2 else None
    expect(op == 8 and code == 1003, "a text frame is answered with close 1003 (%r %r)"
           % (op, p[:40]))
    s.sendall(frame(8, p[:2]))
    try:
        while read_frame(s)[1] != 8:
            pass
        expect(False, "nothing after the close frame")
    except (EOFError, ConnectionResetError):
        expect(True, "the server closes the connection after the close handshake")
    s.close()

    # The deprecated extension instead of the query [R-WS.10a/11a].
    s, key, status, hdrs = handshake(port, "/usp", "v1.usp",
                                     'bbf-usp-protocol; eid="proto::py-old"')
    expect(" 101 " in status, "deprecated extension: 101 (%r)" % status)
    ext = hdr(hdrs, "sec-websocket-extensions")
    expect(ext == 'bbf-usp-protocol; eid="proto::agent-srv"',
           "the server answers with its own eid in the extension [R-WS.11a] (%r)" % ext)
    first_record(s, "proto::py-old")
    s.sendall(frame(8, struct.pack(">H", 1000) + b"bye"))
    fin, op, p = next_data(s)
    expect(op == 8 and p[:2] == struct.pack(">H", 1000), "our close 1000 is echoed (%r)" % p[:8])
    try:
        read_frame(s)
        expect(False, "nothing after the close echo")
    except (EOFError, ConnectionResetError):
        expect(True, "then the server closes the connection")
    s.close()


# ---- fake servers ----

def listen_socket(portfile):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(20)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    return srv


def check_request(c, port, eid_escaped):
    line, hdrs = read_head(c)
    expect(line == "GET /usp?eid=%s HTTP/1.1" % eid_escaped,
           "request line with the eid query, %% escaped as %%25 [R-WS.10b/c] (%r)" % line)
    expect((hdr(hdrs, "upgrade") or "").lower() == "websocket" and
           "upgrade" in (hdr(hdrs, "connection") or "").lower() and
           hdr(hdrs, "sec-websocket-version") == "13", "a WebSocket upgrade, version 13")
    expect(hdr(hdrs, "sec-websocket-protocol") == "v1.usp",
           "Sec-WebSocket-Protocol: v1.usp [R-WS.9/10] (%r)" % hdr(hdrs, "sec-websocket-protocol"))
    expect(hdr(hdrs, "host") == "127.0.0.1:%d" % port, "Host: 127.0.0.1:%d (%r)" % (port, hdr(hdrs, "host")))
    expect(hdr(hdrs, "sec-websocket-extensions") is None,
           "no deprecated bbf-usp-protocol extension [R-WS.10a]")
    return hdr(hdrs, "sec-websocket-key") or ""


def answer(c, key, proto):
    r = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: %s\r\n" % accept_key(key))
    if proto:
        r += "Sec-WebSocket-Protocol: %s\r\n" % proto
    c.sendall((r + "\r\n").encode())


def gone(c, within):
    c.settimeout(within)
    try:
        if c.buf:
            return False
        c.fill()
        return False
    except EOFError:
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def broken(portfile, eid):
    srv = listen_socket(portfile)
    port = srv.getsockname()[1]
    esc = eid.replace("%", "%25")
    c = Conn(srv.accept()[0])
    c.settimeout(5)
    key = check_request(c, port, esc)
    answer(c, key, None)
    t1 = time.time()
    expect(gone(c, 3), "no Sec-WebSocket-Protocol in the answer: the client closes, sending "
           "nothing [R-WS.12]")
    c.close()
    c = Conn(srv.accept()[0])
    t2 = time.time()
    c.settimeout(5)
    key = check_request(c, port, esc)
    expect(t2 - t1 >= 0.9, "the retry waits for the back-off (%.2f s, at least 1 s)" % (t2 - t1))
    print("#    retried %.2f s after the refusal" % (t2 - t1))
    answer(c, key, "v2.other")
    expect(gone(c, 3), "subprotocol v2.other in the answer: refused too [R-WS.12]")
    c.close()


def silent(portfile, eid):
    srv = listen_socket(portfile)
    port = srv.getsockname()[1]
    c = Conn(srv.accept()[0])
    c.settimeout(15)
    key = check_request(c, port, eid.replace("%", "%25"))
    answer(c, key, "v1.usp")
    t0 = time.time()
    fin, op, p, masked = read_frame(c)
    expect(fin and op == 2 and masked and b"\x4a\x00" in p,
           "first frame: a masked binary WebSocketConnectRecord [R-MTP.6]")
    c.sendall(frame(9, b"hi", mask=False))
    fin, op, p, masked = read_frame(c)
    expect(op == 10 and p == b"hi" and masked, "the client answers our ping with a pong")
    fin, op, p, masked = read_frame(c)
    t = time.time() - t0
    expect(op == 9, "the client pings on its own (opcode %d)" % op)
    expect(4.0 <= t <= 6.5, "its first ping %.2f s after the session began (keepalive 5 s) "
           "[R-WS.17/18]" % t)
    print("#    first ping %.2f s after the session began; not answered" % t)
    try:
        while True:
            fin, op, p, masked = read_frame(c)
    except (EOFError, ConnectionResetError):
        t = time.time() - t0
        expect(9.0 <= t <= 12.5, "the client drops the silent session %.2f s after it began" % t)
    except socket.timeout:
        expect(False, "the client drops the silent session in time")


try:
    mode = sys.argv[1]
    if mode == "clients":
        clients(int(sys.argv[2]))
    elif mode == "broken":
        broken(sys.argv[2], sys.argv[3])
    elif mode == "silent":
        silent(sys.argv[2], sys.argv[3])
except Exception as e:
    expect(False, "fake peer: %r" % e)
print("fake %s: %d failure(s)" % (sys.argv[1], len(bad)), flush=True)
sys.exit(1 if bad else 0)
PYEOF

run exchange "$drv" exchange "$(free_port)" "$(free_port)"
run dup "$drv" dup "$(free_port)" "$(free_port)"
run unused-port "$drv" unused-port "$(free_port)"

# ---- raw clients against our listener ----
port=$(free_port)
"$drv" listen "$port" 2 >"$tmp/listen.out" 2>&1 &
drv_pid=$!
pids="$pids $drv_pid"
if wait_for "$tmp/listen.out" LISTENING 10; then
    "$py" "$tmp/fake_ws.py" clients "$port" >"$tmp/raw-clients.out" 2>&1
    count raw-clients-peer-side $? "$tmp/raw-clients.out"
else
    echo "FAIL the listener did not start" >"$tmp/raw-clients.out"
    count raw-clients-peer-side 1 "$tmp/raw-clients.out"
fi
wait "$drv_pid"
count raw-clients-listener-side $? "$tmp/listen.out"

# ---- deliberately broken fake servers ----
for mode in broken silent; do
    rm -f "$tmp/fake.port"
    "$py" "$tmp/fake_ws.py" "$mode" "$tmp/fake.port" 'doc::agent%21' >"$tmp/$mode.fake" 2>&1 &
    fake_pid=$!
    pids="$pids $fake_pid"
    i=0
    while [ ! -s "$tmp/fake.port" ] && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    run "$mode-server-client-side" "$drv" fake-client "$(cat "$tmp/fake.port" 2>/dev/null || echo 1)" "$mode"
    wait "$fake_pid"
    count "$mode-server-peer-side" $? "$tmp/$mode.fake"
done

# ---- the server goes away and comes back on the same port ----
port=$(free_port)
"$drv" serve "$port" >"$tmp/serve1.out" 2>&1 &
srv_pid=$!
pids="$pids $srv_pid"
if ! wait_for "$tmp/serve1.out" LISTENING 10; then
    fail_setup "the controller process did not listen: $(tail -n 5 "$tmp/serve1.out")"
fi
"$drv" client "$port" >"$tmp/client.out" 2>&1 &
cl_pid=$!
pids="$pids $cl_pid"
if wait_for "$tmp/client.out" KILL-SERVER-NOW 15; then
    kill -9 "$srv_pid"
    wait "$srv_pid" 2>/dev/null
    # Down for 2.5 s: the agent's retries (1-2 s, then 2-4 s) meet a closed port.
    sleep 2.5
    "$drv" serve "$port" >"$tmp/serve2.out" 2>&1 &
    srv_pid=$!
    pids="$pids $srv_pid"
    say "controller killed and started again on port $port (pid $srv_pid)"
fi
wait "$cl_pid"
count restart-agent-side $? "$tmp/client.out"
grep 'client back' "$tmp/client.out" | sed 's/^#  *\[[ 0-9.]*\] */    /'
i=0
while kill -0 "$srv_pid" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.05
    i=$((i + 1))
done
if kill -0 "$srv_pid" 2>/dev/null; then
    echo "FAIL the second controller did not end after its session closed" >>"$tmp/serve2.out"
    stop_pid "$srv_pid"
    count restart-controller-side 1 "$tmp/serve2.out"
else
    wait "$srv_pid"
    rc=$?
    grep -q 'SESSION-CLOSED peer-closed 1000' "$tmp/serve2.out" || rc=1
    count restart-controller-side $rc "$tmp/serve2.out"
fi

# ---- many sessions in one process: fds and memory ----
run scale-1000 "$drv" scale "$(free_port)" 1000

# ---- wss:// with certificates ----
certs="$tmp/certs"
mk_certs() {
    [ -x "$build/uspsim" ] || {
        echo "no $build/uspsim to make certificates with"
        return 1
    }
    for v in "" unknown-ca wrong-san; do
        "$build/uspsim" certs --out "$certs" --agents 100 --controller-id proto::ctl \
            --endpoint-id 'doc::agent{n}' ${v:+--variant "$v"} || return 1
    done
    # An agent listener's certificate: its Endpoint ID and 127.0.0.1, same CA.
    mkdir -p "$certs/srv" && cp "$certs/ca.pem" "$certs/ca.key" "$certs/srv/" &&
        "$build/uspsim" certs --out "$certs/srv" --agents 1 --controller-id doc::agent-srv \
            --endpoint-id 'doc::srv{n}'
}
if mk_certs >"$tmp/certs.log" 2>&1; then
    run wss "$drv" wss "$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)" "$certs"
    run wss-scale-100 "$drv" wss-scale "$(free_port)" 100 "$certs"
else
    count wss-certificates 1 "$tmp/certs.log"
fi

say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/sh
# `uspsim certs` checked from the outside:
#   files      the CA, broker, controller and agent certificates and keys are
#              there, keys mode 600, index.txt lists them with the right
#              fingerprints;
#   openssl    `openssl verify -CAfile ca.pem` accepts every leaf;
#              `openssl x509 -text` shows the SANs (urn:bbf:usp:id: URIs,
#              DNS names, IPs), key usages, extended key usages, CA flag;
#   keep       a second run keeps every file byte for byte, a damaged key is
#              made anew alone (the message names it), --force makes all
#              anew, --key rsa keeps the CA and makes RSA leaves;
#   shared     --shared-agent makes one certificate with a wildcard EID;
#   variants   expired, not-yet-valid, unknown-ca and self-signed fail
#              `openssl verify` with the expected reason, wrong-san carries
#              the wrong Endpoint IDs;
#   usage      bad options give exit status 2, an unwritable folder 1;
#   mosquitto  a real mosquitto (listener PORT 127.0.0.1, cafile/certfile/
#              keyfile, require_certificate true) passes a message between
#              two agents' mosquitto_pub/mosquitto_sub with their
#              certificates, and refuses a client signed by another CA, an
#              expired client, a client without a certificate, and a client
#              that does not trust the broker's CA; again with RSA keys.
# Usage: sh tests/integration/test-certs.sh BUILD
# Prints one line per check; "certs: N passed, M failed"; non-zero on failure.
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
passed=0
failed=0

say() { echo "certs: $*"; }
fail_setup() {
    say "$*"
    say "$passed passed, $((failed + 1)) failed"
    exit 1
}

cd "$root" || fail_setup "cannot enter $root"
case $build in /*) ;; *) build="$root/$build" ;; esac
sim="$build/uspsim"
[ -x "$sim" ] || fail_setup "no $sim: build it first (make BUILD=...)"
command -v openssl >/dev/null 2>&1 || fail_setup "openssl is missing (Debian: openssl)"
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$mosq" ] || fail_setup "mosquitto is missing (Debian: mosquitto)"
command -v mosquitto_pub >/dev/null 2>&1 || fail_setup "mosquitto_pub is missing (Debian: mosquitto-clients)"
py=$(command -v python3 || echo /usr/bin/python3)
[ -x "$py" ] || fail_setup "python3 is missing"

tmp=$(mktemp -d) || fail_setup "mktemp failed"
# mosquitto started as root drops to its own user and must still read the
# files it is given.
chmod 755 "$tmp"
broker_pid=""
sub_pid=""
stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}
cleanup() {
    stop_pid "$sub_pid"
    stop_pid "$broker_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# check NAME COMMAND...: passes when COMMAND succeeds.
check() {
    name=$1
    shift
    if "$@" >"$tmp/check.out" 2>&1; then
        passed=$((passed + 1))
        say "PASS $name"
    else
        failed=$((failed + 1))
        say "FAIL $name"
        sed 's/^/    /' "$tmp/check.out" | tail -n 20
    fi
}

# has FILE TEXT: FILE holds TEXT (fixed string).
has() {
    grep -qF -- "$2" "$1" || {
        echo "'$2' is not in $1:"
        cat "$1"
        return 1
    }
}
hasnt() {
    if grep -qF -- "$2" "$1"; then
        echo "'$2' is in $1"
        return 1
    fi
}

# fails_with STATUS COMMAND...: COMMAND exits with STATUS.
fails_with() {
    want=$1
    shift
    "$@" >"$tmp/fw.out" 2>"$tmp/fw.err"
    got=$?
    cat "$tmp/fw.err"
    [ "$got" -eq "$want" ] || {
        echo "exit status $got, wanted $want"
        return 1
    }
}

c="$tmp/certs"
text() { openssl x509 -in "$1" -noout -text >"$tmp/x509.txt" 2>&1; }

# ---- files --------------------------------------------------------------------
"$sim" certs --out "$c" --agents 3 --broker-host test.example,10.1.2.3 \
    --broker-host ::2 >"$tmp/run1.out" 2>&1 || {
    cat "$tmp/run1.out"
    fail_setup "uspsim certs failed"
}
files_there() {
    for f in ca broker controller agents/1 agents/2 agents/3; do
        [ -s "$c/$f.pem" ] && [ -s "$c/$f.key" ] || {
            echo "missing $c/$f.pem or .key"
            return 1
        }
        m=$(stat -c %a "$c/$f.key")
        [ "$m" = 600 ] || {
            echo "$f.key has mode $m"
            return 1
        }
    done
    [ ! -e "$c/agents/4.pem" ] || return 1
    has "$tmp/run1.out" "3 made, 0 kept"
}
check "files are there, keys mode 600" files_there

manifest_ok() {
    [ "$(grep -vc '^#' "$c/index.txt")" -eq 6 ] || {
        cat "$c/index.txt"
        return 1
    }
    for role in ca broker controller agent:1 agent:2 agent:3; do
        line=$(grep "^$role	" "$c/index.txt") || {
            echo "no line for $role"
            return 1
        }
        cert=$(echo "$line" | cut -f2)
        fp=$(echo "$line" | cut -f6)
        want=$(openssl x509 -in "$c/$cert" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' |
            tr 'A-F' 'a-f')
        [ "$fp" = "sha256:$want" ] || {
            echo "$role: $fp, openssl says $want"
            return 1
        }
    done
    has "$c/index.txt" "agent:2	agents/2.pem	agents/2.key	URI:urn:bbf:usp:id:os::012345-SIM000002	"
}
check "index.txt lists them with their fingerprints" manifest_ok

# ---- openssl ------------------------------------------------------------------
verify_all() {
    (cd "$c" && openssl verify -CAfile ca.pem broker.pem controller.pem agents/1.pem \
        agents/2.pem agents/3.pem) >"$tmp/verify.out" 2>&1 || {
        cat "$tmp/verify.out"
        return 1
    }
    [ "$(grep -c ': OK$' "$tmp/verify.out")" -eq 5 ]
}
check "openssl verify -CAfile ca.pem accepts every leaf" verify_all

agent_text() {
    text "$c/agents/1.pem" &&
        has "$tmp/x509.txt" "URI:urn:bbf:usp:id:os::012345-SIM000001" &&
        has "$tmp/x509.txt" "Subject: O = uspsim, CN = os::012345-SIM000001" &&
        has "$tmp/x509.txt" "Issuer: O = uspsim, CN = uspsim test CA" &&
        has "$tmp/x509.txt" "X509v3 Key Usage: critical" &&
        has "$tmp/x509.txt" "Digital Signature" &&
        hasnt "$tmp/x509.txt" "Certificate Sign" &&
        has "$tmp/x509.txt" "TLS Web Server Authentication, TLS Web Client Authentication" &&
        has "$tmp/x509.txt" "CA:FALSE" &&
        has "$tmp/x509.txt" "X509v3 Subject Key Identifier" &&
        has "$tmp/x509.txt" "X509v3 Authority Key Identifier" &&
        has "$tmp/x509.txt" "ASN1 OID: prime256v1" &&
        has "$tmp/x509.txt" "ecdsa-with-SHA256" &&
        openssl x509 -in "$c/agents/1.pem" -noout -checkend 86400
}
check "agent: SAN URI urn:bbf:usp:id:<eid>, key usages, P-256" agent_text

broker_text() {
    text "$c/broker.pem" &&
        has "$tmp/x509.txt" "DNS:localhost, DNS:test.example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.1.2.3, IP Address:0:0:0:0:0:0:0:2" &&
        has "$tmp/x509.txt" "TLS Web Server Authentication" &&
        hasnt "$tmp/x509.txt" "Client Authentication" &&
        hasnt "$tmp/x509.txt" "URI:"
}
check "broker: SAN localhost, 127.0.0.1, ::1 and --broker-host, serverAuth" broker_text

controller_text() {
    text "$c/controller.pem" &&
        has "$tmp/x509.txt" "URI:urn:bbf:usp:id:self::uspsim-controller, DNS:localhost, DNS:test.example, IP Address:127.0.0.1" &&
        has "$tmp/x509.txt" "TLS Web Server Authentication, TLS Web Client Authentication"
}
check "controller: SAN its EID and the hosts" controller_text

ca_text() {
    text "$c/ca.pem" &&
        has "$tmp/x509.txt" "CA:TRUE, pathlen:0" &&
        has "$tmp/x509.txt" "Certificate Sign, CRL Sign" &&
        hasnt "$tmp/x509.txt" "Subject Alternative Name" &&
        openssl x509 -in "$c/ca.pem" -noout -checkend $((3000 * 86400))
}
check "CA: CA:TRUE, keyCertSign, ten years" ca_text

# ---- keep / force ---------------------------------------------------------------
sums() { (cd "$c" && find . -name '*.pem' -o -name '*.key' | sort | xargs sha256sum); }
sums >"$tmp/sums1"
keep_all() {
    "$sim" certs --out "$c" --agents 3 --broker-host test.example,10.1.2.3 \
        --broker-host ::2 >"$tmp/run2.out" 2>&1 || return 1
    sums >"$tmp/sums2"
    cmp "$tmp/sums1" "$tmp/sums2" && has "$tmp/run2.out" "0 made, 3 kept" &&
        has "$tmp/run2.out" "ca.pem             kept"
}
check "second run keeps every file" keep_all

remake_damaged() {
    echo "garbage" >"$c/agents/2.key"
    "$sim" certs --out "$c" --agents 3 --broker-host test.example,10.1.2.3 \
        --broker-host ::2 >"$tmp/run3.out" 2>&1 || return 1
    cat "$tmp/run3.out"
    has "$tmp/run3.out" "agents/2.key: not an unencrypted PEM private key" &&
        has "$tmp/run3.out" "no start line" && has "$tmp/run3.out" "1 made, 2 kept" || return 1
    sums >"$tmp/sums3"
    changed=$(diff "$tmp/sums1" "$tmp/sums3" | grep '^>' | awk '{print $3}' | tr '\n' ' ')
    [ "$changed" = "./agents/2.key ./agents/2.pem " ] || {
        echo "changed: $changed"
        return 1
    }
    (cd "$c" && openssl verify -CAfile ca.pem agents/2.pem)
}
check "a damaged key is made anew alone, the file and reason named" remake_damaged

other_hosts() {
    "$sim" certs --out "$c" --agents 3 >"$tmp/run4.out" 2>&1 || return 1
    has "$tmp/run4.out" "broker.pem         made" && has "$tmp/run4.out" "controller.pem     made" &&
        has "$tmp/run4.out" "0 made, 3 kept" && has "$tmp/run4.out" "subjectAltName"
}
check "other --broker-host: broker and controller made anew, agents kept" other_hosts

force_all() {
    sums >"$tmp/sums4"
    "$sim" certs --out "$c" --agents 3 --force >"$tmp/run5.out" 2>&1 || return 1
    sums >"$tmp/sums5"
    [ "$(diff "$tmp/sums4" "$tmp/sums5" | grep -c '^>')" -eq 12 ] && has "$tmp/run5.out" "3 made, 0 kept"
}
check "--force makes every file anew" force_all

# ---- shared ---------------------------------------------------------------------
shared() {
    "$sim" certs --out "$c" --shared-agent >"$tmp/shared.out" 2>&1 || return 1
    text "$c/agents/shared.pem" &&
        has "$tmp/x509.txt" "URI:urn:bbf:usp:id:os::012345-SIM*" &&
        (cd "$c" && openssl verify -CAfile ca.pem agents/shared.pem) &&
        has "$c/index.txt" "agent:shared	agents/shared.pem"
}
check "--shared-agent: one certificate, SAN urn:bbf:usp:id:os::012345-SIM*" shared

shared_tpl() {
    "$sim" certs --out "$tmp/c-oui" --shared-agent --endpoint-id 'oui:A4B1C2:cpe-{n}-x{n:04}' \
        >"$tmp/shared2.out" 2>&1 || return 1
    text "$tmp/c-oui/agents/shared.pem" && has "$tmp/x509.txt" "URI:urn:bbf:usp:id:oui:A4B1C2:cpe-*-x*"
}
check "--shared-agent: the pattern follows --endpoint-id" shared_tpl

# ---- variants -------------------------------------------------------------------
variant_fails() {
    v=$1
    reason=$2
    "$sim" certs --out "$c" --agents 2 --variant "$v" >"$tmp/v.out" 2>&1 || {
        cat "$tmp/v.out"
        return 1
    }
    for f in broker controller agents/1 agents/2; do
        [ -s "$c/$v/$f.pem" ] || return 1
        if (cd "$c" && openssl verify -CAfile ca.pem "$v/$f.pem") >"$tmp/vv.out" 2>&1; then
            echo "$v/$f.pem verifies"
            return 1
        fi
        has "$tmp/vv.out" "$reason" || return 1
    done
    # The trusted CA is the one of DIR, untouched.
    cmp "$c/ca.pem" "$tmp/ca-before.pem"
}
cp "$c/ca.pem" "$tmp/ca-before.pem"
cp "$c/ca.key" "$tmp/ca-before.key"
check "variant expired: openssl says expired" variant_fails expired "certificate has expired"
check "variant not-yet-valid: openssl says not yet valid" variant_fails not-yet-valid \
    "certificate is not yet valid"
check "variant unknown-ca: not signed by ca.pem" variant_fails unknown-ca \
    "unable to get local issuer certificate"
check "variant self-signed: openssl says self-signed" variant_fails self-signed \
    "self-signed certificate"

variant_force() {
    sums >"$tmp/vs1"
    "$sim" certs --out "$c" --agents 2 --variant expired --force >"$tmp/vf.out" 2>&1 || return 1
    sums >"$tmp/vs2"
    cmp "$c/ca.pem" "$tmp/ca-before.pem" && cmp "$c/ca.key" "$tmp/ca-before.key" || return 1
    outside=$(diff "$tmp/vs1" "$tmp/vs2" | grep '^>' | awk '{print $3}' | grep -v '^./expired/')
    [ -z "$outside" ] || {
        echo "changed outside expired/: $outside"
        return 1
    }
    has "$tmp/vf.out" "2 made, 0 kept"
}
check "--variant with --force remakes only DIR/V, never DIR/ca.pem" variant_force

unknown_ca_own() {
    (cd "$c" && openssl verify -CAfile unknown-ca/ca.pem unknown-ca/agents/1.pem) &&
        ! cmp -s "$c/ca.pem" "$c/unknown-ca/ca.pem"
}
check "variant unknown-ca: signed by its own second CA" unknown_ca_own

wrong_san() {
    "$sim" certs --out "$c" --agents 2 --variant wrong-san >"$tmp/v.out" 2>&1 || return 1
    (cd "$c" && openssl verify -CAfile ca.pem wrong-san/agents/1.pem wrong-san/controller.pem) &&
        text "$c/wrong-san/agents/1.pem" &&
        has "$tmp/x509.txt" "CN = os::012345-SIM000001" &&
        has "$tmp/x509.txt" "URI:urn:bbf:usp:id:os::012345-SIM000002" &&
        text "$c/wrong-san/controller.pem" &&
        has "$tmp/x509.txt" "URI:urn:bbf:usp:id:self::uspsim-wrong-san" &&
        text "$c/wrong-san/broker.pem" &&
        has "$tmp/x509.txt" "DNS:wrong-host.invalid" && hasnt "$tmp/x509.txt" "localhost" &&
        "$sim" certs --out "$c" --shared-agent --variant wrong-san >"$tmp/v2.out" 2>&1 &&
        text "$c/wrong-san/agents/shared.pem" &&
        has "$tmp/x509.txt" "URI:urn:bbf:usp:id:os::012345-XSIM*"
}
check "variant wrong-san: Endpoint IDs and hosts that do not fit" wrong_san

# ---- usage ----------------------------------------------------------------------
usage() {
    fails_with 2 "$sim" certs || return 1
    fails_with 2 "$sim" certs --out "$tmp/u" --key dsa || return 1
    fails_with 2 "$sim" certs --out "$tmp/u" --variant broken || return 1
    fails_with 2 "$sim" certs --out "$tmp/u" --agents 2 --shared-agent || return 1
    fails_with 2 "$sim" certs --out "$tmp/u" --days 0 || return 1
    fails_with 2 "$sim" certs --out "$tmp/u" --broker-host 'bad host' || return 1
    fails_with 2 "$sim" certs --out "$tmp/u" --controller-id nonsense || return 1
    fails_with 2 "$sim" certs --out "$tmp/u" --shared-agent --endpoint-id 'proto::a{n}' || return 1
    has "$tmp/fw.err" "R-SEC.12" || return 1
    fails_with 2 "$sim" certs --out "$tmp/u" --endpoint-id 'os::012345-{x}' || return 1
    [ ! -e "$tmp/u" ] || return 1
    : >"$tmp/plainfile"
    fails_with 1 "$sim" certs --out "$tmp/plainfile/sub" || return 1
    has "$tmp/fw.err" "$tmp/plainfile" || return 1
    "$sim" certs --help >"$tmp/help.out" && has "$tmp/help.out" "--shared-agent" &&
        "$sim" --help | grep -q "certs"
}
check "bad usage exits 2, an unwritable folder 1 naming it" usage

# ---- mosquitto ------------------------------------------------------------------
free_port() {
    "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
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
    stop_pid "$broker_pid"
    broker_pid=""
    : >"$tmp/broker.log"
    chmod 666 "$tmp/broker.log"
    cat >"$tmp/mosquitto.conf" <<EOF
listener $port 127.0.0.1
cafile $c/ca.pem
certfile $c/broker.pem
keyfile $c/broker.key
require_certificate true
allow_anonymous true
persistence false
log_dest file $tmp/broker.log
log_type all
EOF
    "$mosq" -c "$tmp/mosquitto.conf" >"$tmp/broker.out" 2>&1 &
    broker_pid=$!
    wait_port "$port" || fail_setup "mosquitto did not accept on $port: $(tail -n 5 "$tmp/broker.out" "$tmp/broker.log")"
}
# The keys are 0600 for root; a mosquitto that drops to its own user
# must still read the broker key, so it gets a copy it owns.
give_broker_key() {
    if id mosquitto >/dev/null 2>&1; then
        chown mosquitto "$c/broker.key" 2>/dev/null || true
    fi
    chmod 755 "$c"
}

# exchange TAG: agent 2 subscribes, agent 1 publishes, agent 2 receives.
exchange() {
    tag=$1
    rm -f "$tmp/sub.out"
    timeout 20 mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv5 -q 1 -t usp/test -C 1 -i "sub-$tag" \
        --cafile "$c/ca.pem" --cert "$c/agents/2.pem" --key "$c/agents/2.key" \
        >"$tmp/sub.out" 2>"$tmp/sub.err" &
    sub_pid=$!
    i=0
    while ! grep -q "SUBACK to sub-$tag" "$tmp/broker.log" && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    has "$tmp/broker.log" "SUBACK to sub-$tag" || return 1
    mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv5 -q 1 -t usp/test -m "hello-$tag" \
        --cafile "$c/ca.pem" --cert "$c/agents/1.pem" --key "$c/agents/1.key" || return 1
    wait "$sub_pid"
    sub_pid=""
    has "$tmp/sub.out" "hello-$tag"
}

# refused ARGS...: mosquitto_pub with these TLS arguments does not get in.
refused() {
    if timeout 15 mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv5 -q 1 -t usp/test \
        -m refused "$@" >"$tmp/pub.out" 2>&1; then
        echo "mosquitto_pub $* got in"
        return 1
    fi
    cat "$tmp/pub.out"
    return 0
}

port=$(free_port)
"$sim" certs --out "$c" --agents 2 >/dev/null 2>&1 || fail_setup "uspsim certs failed"
give_broker_key
start_broker
say "mosquitto $("$mosq" -h 2>/dev/null | head -n 1 | sed 's/.*version //') with TLS on 127.0.0.1:$port"
check "mosquitto: agent 1 publishes to agent 2, both with their certificates (EC)" exchange ec
check "mosquitto: refuses a client signed by another CA" refused --cafile "$c/ca.pem" \
    --cert "$c/unknown-ca/agents/1.pem" --key "$c/unknown-ca/agents/1.key"
check "mosquitto: refuses an expired client" refused --cafile "$c/ca.pem" \
    --cert "$c/expired/agents/1.pem" --key "$c/expired/agents/1.key"
check "mosquitto: refuses a self-signed client" refused --cafile "$c/ca.pem" \
    --cert "$c/self-signed/agents/1.pem" --key "$c/self-signed/agents/1.key"
check "mosquitto: refuses a client without a certificate" refused --cafile "$c/ca.pem"
check "mosquitto_pub refuses a broker it does not trust" refused \
    --cafile "$c/unknown-ca/ca.pem" --cert "$c/agents/1.pem" --key "$c/agents/1.key"
refused_log() { has "$tmp/broker.log" "certificate verify failed"; }
check "mosquitto logs the failed certificate verification" refused_log

# RSA leaves under the same (EC) CA.
rsa() {
    "$sim" certs --out "$c" --agents 2 --key rsa >"$tmp/rsa.out" 2>&1 || return 1
    has "$tmp/rsa.out" "ca.pem             kept" && has "$tmp/rsa.out" "2 made, 0 kept" &&
        text "$c/agents/1.pem" && has "$tmp/x509.txt" "rsaEncryption" &&
        has "$tmp/x509.txt" "(2048 bit)" && has "$tmp/x509.txt" "Key Encipherment" &&
        (cd "$c" && openssl verify -CAfile ca.pem agents/1.pem broker.pem)
}
check "--key rsa keeps the CA and makes RSA leaves" rsa
give_broker_key
start_broker
check "mosquitto: agents with RSA certificates" exchange rsa

say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

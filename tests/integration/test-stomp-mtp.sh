#!/bin/sh
# The STOMP binding of libusp against a real RabbitMQ (and a scripted fake
# STOMP server for what a real broker cannot show): builds
# tests/integration/stomp_mtp_check.c against BUILD/libusp.a (with the same
# sanitizers), starts a private RabbitMQ on 127.0.0.1 on free ports
# (tests/integration/rabbitmq.sh), and runs the driver's scenarios:
#   fake-wire       every frame the client sends checked byte for byte;
#                   MESSAGEs cut at every byte position, one byte per write
#                   and merged into one write, bodies with NUL bytes; echoes
#                   go to each message's reply-to-dest.
#   fake-errors     oversized frame, ERROR, garbage, endless body, refused
#                   SUBSCRIBE, half a frame, wrong version, unanswered
#                   DISCONNECT: each reported with a clear detail.
#   fake-notopic    no destination anywhere: DISCONNECT, DOWN, retry.
#   fake-heartbeat  500 ms heart-beats kept; a silent server is dropped.
#   exchange        controller and agent through RabbitMQ: STOMPConnectRecord,
#                   records both ways at the reply-to-dest, heart-beats kept
#                   through an idle spell, oversize, DisconnectRecord.
#   errors          bad login, bad vhost, SEND and SUBSCRIBE to destinations
#                   RabbitMQ rejects, no destination, "localhost", no listener.
#   reconnect       RabbitMQ killed and restarted: both come back within
#                   their back-off; a new STOMPConnectRecord; exchange again.
#   tls             stomps:// to RabbitMQ's TLS STOMP listener (client
#                   certificate required): records both ways; an untrusted
#                   client certificate and an untrusted broker, each refused
#                   with the TLS reason in the detail.
#   scale-1000      1000 agents from one process: time, fds and memory.
# The fake scenarios run while RabbitMQ boots.
# Usage: sh tests/integration/test-stomp-mtp.sh BUILD
# Prints one line per check; "stomp-mtp: N passed, M failed"; non-zero on failure.
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
passed=0
failed=0
t0=$(date +%s)

say() { echo "stomp-mtp: $*"; }
fail_setup() {
    say "$*"
    say "0 passed, 1 failed"
    exit 1
}

cd "$root" || fail_setup "cannot enter $root"
# shellcheck source=tests/integration/rabbitmq.sh
. "$here/rabbitmq.sh"
[ -f "$build/libusp.a" ] || fail_setup "no $build/libusp.a: build it first (make BUILD=$build)"
rmq_check || fail_setup "$rmq_why"

tmp=$(mktemp -d) || fail_setup "mktemp failed"
drv_pid=""
cleanup() {
    if [ -n "$drv_pid" ]; then
        kill "$drv_pid" 2>/dev/null
        wait "$drv_pid" 2>/dev/null
    fi
    rmq_stop
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Certificates for stomps:// (uspsim certs: broker.pem names localhost and
# 127.0.0.1), and a second set from another CA that nobody trusts.
[ -x "$build/uspsim" ] || fail_setup "no $build/uspsim: build it first (make BUILD=$build)"
"$build/uspsim" certs --out "$tmp/certs" --agents 1 >"$tmp/certs.out" 2>&1 &&
    "$build/uspsim" certs --out "$tmp/other" --agents 1 >>"$tmp/certs.out" 2>&1 ||
    fail_setup "uspsim certs failed: $(tail -n 3 "$tmp/certs.out")"
rmq_tls_dir="$tmp/certs"

# The broker boots (about 5 s) while the driver is built and the fake
# scenarios run.
rmq_launch "$tmp/rmq" || fail_setup "$rmq_why"

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

drv="$tmp/stomp_mtp_check"
# shellcheck disable=SC2046,SC2086 # flags are meant to split into words
if ! cc $sanflags -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow \
        -Wstrict-prototypes -O1 -g -Ilib/include -Ilib -I"$build/gen" -I"$tmp/gen" \
        $(pkg-config --cflags libprotobuf-c libuv) -o "$drv" \
        tests/integration/stomp_mtp_check.c "$build/libusp.a" \
        $(pkg-config --libs libprotobuf-c libxml-2.0 libuv openssl) -lm -lpthread \
        >"$tmp/cc.log" 2>&1; then
    sed 's/^/    /' "$tmp/cc.log"
    fail_setup "cannot build tests/integration/stomp_mtp_check.c"
fi
say "driver built${san:+ with -fsanitize=$san}"

# run NAME COMMAND...: runs a driver scenario, shows its notes, counts it.
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

# ---- the scripted fake server (in the driver) ----
run fake-wire "$drv" fake-wire
run fake-errors "$drv" fake-errors
run fake-notopic "$drv" fake-notopic
run fake-heartbeat "$drv" fake-heartbeat

# ---- RabbitMQ ----
rmq_wait 40 || fail_setup "$rmq_why"
port=$rmq_stomp_port
say "RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) STOMP on 127.0.0.1:$port (node pid $rmq_pid, epmd pid $rmq_epmd_pid), up $(($(date +%s) - t0)) s after the start"

run exchange "$drv" exchange "$port"
run tls "$drv" tls "$rmq_stomps_port" "$tmp/certs" "$tmp/other"
run errors "$drv" errors "$port" "$(rmq_free_port)"

# ---- the broker dies and comes back on the same ports ----
"$drv" reconnect "$port" >"$tmp/reconnect.out" 2>&1 &
drv_pid=$!
i=0
while ! grep -q KILL-BROKER-NOW "$tmp/reconnect.out" && [ $i -lt 300 ] &&
    kill -0 "$drv_pid" 2>/dev/null; do
    sleep 0.05
    i=$((i + 1))
done
if grep -q KILL-BROKER-NOW "$tmp/reconnect.out"; then
    rmq_kill
    tk=$(date +%s)
    if rmq_start "$tmp/rmq" 40; then
        say "RabbitMQ killed and started again on port $port (pid $rmq_pid) in $(($(date +%s) - tk)) s"
    else
        say "RabbitMQ did not come back: $rmq_why"
    fi
fi
wait "$drv_pid"
rc=$?
drv_pid=""
if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    say "PASS reconnect ($(grep -c '^ok ' "$tmp/reconnect.out") checks)"
    grep '^#' "$tmp/reconnect.out" | grep -v '^#    \[' | sed 's/^/    /'
    grep 'agent back' "$tmp/reconnect.out" | sed 's/^#  */    /'
else
    failed=$((failed + 1))
    say "FAIL reconnect"
    sed 's/^/    /' "$tmp/reconnect.out" | tail -n 80
fi

# ---- many agents: time, fds and memory ----
run scale-1000 "$drv" scale "$port" 1000

rmq_stop
say "finished in $(($(date +%s) - t0)) s"
say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

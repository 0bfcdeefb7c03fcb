#!/bin/sh
# The CoAP binding of libusp (legacy: CoAP was obsoleted in USP 1.3; the
# binding reproduces TR-369 1.0-1.2 deployments) against itself: real
# libcoap 4.3 on both sides over UDP on 127.0.0.1 with free ports. Builds
# tests/integration/coap_mtp_check.c against BUILD/libusp.a (with the same
# sanitizers) and runs its scenarios:
#   exchange-coap   agent <-> controller both ways over coap:// (NoSec):
#                   accept from the reply-to, answers on the association,
#                   a 60000-byte record each way (Block1), a controller-
#                   started association, /.well-known/core with
#                   rt="bbf.usp.endpoint" and if="bbf.usp.a"/"bbf.usp.c",
#                   graceful close with a DisconnectRecord, listener close
#   exchange-coaps  the same over coaps:// (DTLS 1.2, mutual
#                   authentication, peer Endpoint IDs from certificates)
#   bad             wrong requests from libcoap's own client API: 4.00 (not
#                   a Record, no or bad reply-to, empty), 4.15 (other or no
#                   Content-Format), 4.05 (PUT, GET, DELETE), 4.04, 4.03 (the
#                   check callback), 4.13 (over max_record); junk datagrams from a raw UDP fake
#                   peer change nothing
#   down            a silent UDP socket (fake peer that never answers):
#                   DOWN with reason timeout after the retransmissions,
#                   tx_failed, UP again after the back-off; a port with
#                   nobody: DOWN (ICMP); a 4.04 answer: tx_failed, stays UP
#   untrusted       DTLS with a certificate from another CA refused in both
#                   directions; a trusted agent still gets through
# Usage: sh tests/integration/test-coap-mtp.sh BUILD
# Prints one line per check; "coap-mtp: N passed, M failed"; non-zero on failure.
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
passed=0
failed=0

say() { echo "coap-mtp: $*"; }
fail_setup() {
    say "$*"
    say "0 passed, 1 failed"
    exit 1
}

cd "$root" || fail_setup "cannot enter $root"
[ -f "$build/libusp.a" ] || fail_setup "no $build/libusp.a: build it first (make BUILD=$build)"
pkg-config --exists libcoap-3-openssl || fail_setup "libcoap is missing (Debian: libcoap3-dev)"

tmp=$(mktemp -d) || fail_setup "mktemp failed"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
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

drv="$tmp/coap_mtp_check"
# shellcheck disable=SC2046,SC2086 # flags are meant to split into words
if ! cc $sanflags -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow \
        -Wstrict-prototypes -g -Ilib/include -Ilib -I"$build/gen" -I"$tmp/gen" \
        $(pkg-config --cflags libprotobuf-c libuv libcoap-3-openssl) -o "$drv" \
        tests/integration/coap_mtp_check.c "$build/libusp.a" \
        $(pkg-config --libs libprotobuf-c libxml-2.0 libuv openssl libmosquitto libwebsockets \
            libcoap-3-openssl) \
        -lm -lpthread >"$tmp/cc.log" 2>&1; then
    sed 's/^/    /' "$tmp/cc.log"
    fail_setup "cannot build tests/integration/coap_mtp_check.c"
fi
say "driver built${san:+ with -fsanitize=$san}"

# run NAME ARGS...: one scenario in its own process (stopped by PID when the
# script is interrupted), counted by its exit status.
run() {
    name=$1
    shift
    "$drv" "$@" >"$tmp/$name.out" 2>&1 &
    pid=$!
    wait "$pid"
    rc=$?
    pid=""
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        say "PASS $name ($(grep -c '^ok ' "$tmp/$name.out") checks)"
    else
        failed=$((failed + 1))
        say "FAIL $name (exit $rc)"
        grep -v '^ok \|^#    \[' "$tmp/$name.out" | sed 's/^/    /' | tail -n 60
    fi
}

mkdir -p "$tmp/certs-exchange" "$tmp/certs-untrusted"
run exchange-coap exchange coap "$tmp/certs-exchange"
run exchange-coaps exchange coaps "$tmp/certs-exchange"
run bad bad
run down down
run untrusted untrusted "$tmp/certs-untrusted"

say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

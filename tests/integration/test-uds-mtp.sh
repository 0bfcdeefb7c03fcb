#!/bin/sh
# The UNIX domain socket binding of libusp (lib/mtp_uds.c) on real sockets
# in a temporary folder: builds tests/integration/uds_mtp_check.c against
# BUILD/libusp.a (with the same sanitizers) and runs its scenarios:
#   exchange     agent client <-> controller listener and controller client
#                <-> agent listener: UDSConnectRecord first, Endpoint IDs
#                from the handshakes, records both ways, a 3 MB record,
#                oversize refused, DisconnectRecord before the close, the
#                socket file removed.
#   restart      nothing listening (DOWN, connect), a stale socket file
#                replaced, a live one and a plain file left alone; the
#                listener closes and comes back: the client returns after
#                its 1-5 s retry [R-UDS.5].
#   fake-clients deliberately broken raw peers (a FAKE client written here
#                in Python): wrong sync and a TLV running past its frame
#                answered with an Error TLV and a close [R-UDS.23], a bad
#                Endpoint ID refused, Records before the Handshake ignored
#                [R-UDS.20], unknown TLV types ignored [R-UDS.15], an
#                unparseable Record rejected with an Error TLV [R-UDS.24],
#                a received Error TLV closes [R-UDS.25].
#   fake-server  a FAKE server: its Handshake before it read ours (UP), an
#                Error TLV instead of a Handshake (refused, its text in the
#                detail), no Handshake at all (timeout).
#   tls          TLS over the socket with certificates from `uspsim certs`:
#                peer Endpoint IDs from the certificates; an untrusted
#                client certificate, an untrusted server certificate and an
#                Endpoint ID the certificate does not hold refused clearly.
#   scale-1000   1000 sessions in one process: fds and bytes per session.
# Usage: sh tests/integration/test-uds-mtp.sh BUILD
# Prints one line per check; "uds-mtp: N passed, M failed"; non-zero on failure.
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3
passed=0
failed=0

say() { echo "uds-mtp: $*"; }
fail_setup() {
    say "$*"
    say "0 passed, 1 failed"
    exit 1
}

cd "$root" || fail_setup "cannot enter $root"
[ -f "$build/libusp.a" ] || fail_setup "no $build/libusp.a: build it first (make BUILD=$build)"
[ -x "$build/uspsim" ] || fail_setup "no $build/uspsim: build it first (make BUILD=$build)"
[ -x "$py" ] || fail_setup "$py is missing"

# Socket paths must fit sun_path (108 bytes): a short temporary folder.
tmp=$(mktemp -d /tmp/uds-mtp.XXXXXX) || fail_setup "mktemp failed"
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

mkdir -p "$tmp/gen"
protoc-c --proto_path=proto --c_out="$tmp/gen" proto/usp-msg-1-4.proto proto/usp-record-1-4.proto ||
    fail_setup "protoc-c failed on proto/"

san=""
if command -v nm >/dev/null 2>&1; then
    syms=$(nm "$build/libusp.a" 2>/dev/null)
    case $syms in *__asan_*) san="address" ;; esac
    case $syms in *__ubsan_*) san="${san:+$san,}undefined" ;; esac
fi
sanflags=""
[ -n "$san" ] && sanflags="-fsanitize=$san -fno-omit-frame-pointer -fno-sanitize-recover=all"

drv="$tmp/uds_mtp_check"
# shellcheck disable=SC2046,SC2086 # flags are meant to split into words
if ! cc $sanflags -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow \
        -Wstrict-prototypes -g -Ilib/include -Ilib -I"$build/gen" -I"$tmp/gen" \
        $(pkg-config --cflags libprotobuf-c libuv) -o "$drv" \
        tests/integration/uds_mtp_check.c "$build/libusp.a" \
        $(pkg-config --libs libprotobuf-c libxml-2.0 libuv openssl libmosquitto libwebsockets) \
        $(pkg-config --libs libcoap-3-openssl 2>/dev/null) -lm -lpthread >"$tmp/cc.log" 2>&1; then
    sed 's/^/    /' "$tmp/cc.log"
    fail_setup "cannot build tests/integration/uds_mtp_check.c"
fi
say "driver built${san:+ with -fsanitize=$san}"

# count NAME RC LOG
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

run() {
    name=$1
    shift
    "$@" >"$tmp/$name.out" 2>&1
    count "$name" $? "$tmp/$name.out"
}

# wait_for FILE TEXT [SECONDS]
wait_for() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -ge $((${3:-10} * 20)) ] && return 1
        sleep 0.05
    done
    return 0
}

cat >"$tmp/fake_uds.py" <<'PYEOF'
# FAKE peers of the USP UNIX domain socket binding, written from the frame
# layout of TR-369 (R-UDS.6-11) with plain sockets so that they can send
# what a correct endpoint would not. argv: MODE PATH [SUBMODE]
#   clients PATH           broken clients against the binding's listener
#   server PATH SUBMODE    a server: hs-first | error | silent
# Prints "ok ..." / "FAIL ..." per check; exits 1 on any failure.
import os, socket, struct, sys, time

bad = []
CTL = b"proto::uds-controller"
AGENT = b"proto::uds-agent"


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        bad.append(what)


def tlv(t, v):
    return struct.pack(">BI", t, len(v)) + v


def frame(*tlvs):
    body = b"".join(tlvs)
    return b"_USP" + struct.pack(">I", len(body)) + body


def pb_len(field, data):
    # protobuf length-delimited field (wire type 2), short lengths only
    n = len(data)
    out = bytearray([(field << 3) | 2])
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + data


def record(payload, frm=b"proto::fake-client", to=CTL):
    # Record{version, to_id, from_id, no_session_context{payload}}
    return pb_len(1, b"1.4") + pb_len(2, to) + pb_len(3, frm) + pb_len(7, pb_len(1, payload))


class Peer:
    def __init__(self, s):
        self.s = s
        self.buf = b""
        s.settimeout(5)

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def frame(self):
        while len(self.buf) < 8:
            self.fill()
        if self.buf[:4] != b"_USP":
            raise ValueError("bad sync %r" % self.buf[:4])
        n = struct.unpack(">I", self.buf[4:8])[0]
        while len(self.buf) < 8 + n:
            self.fill()
        body, self.buf = self.buf[8:8 + n], self.buf[8 + n:]
        out, i = [], 0
        while i < len(body):
            t, l = struct.unpack(">BI", body[i:i + 5])
            out.append((t, body[i + 5:i + 5 + l]))
            i += 5 + l
        return out

    def eof(self):
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, socket.timeout):
            return False

    def send(self, b):
        self.s.sendall(b)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return Peer(s)


def error_then_close(p, what, word):
    try:
        f = p.frame()
    except Exception as e:
        expect(False, "%s: an Error TLV back (got %r)" % (what, e))
        return
    ok = len(f) == 1 and f[0][0] == 2
    text = f[0][1].decode("utf-8", "replace") if f else ""
    expect(ok, "%s: answered with an Error TLV: %s" % (what, text))
    expect(word.lower() in text.lower(), "%s: the Error names the problem (%r)" % (what, word))
    expect(p.eof(), "%s: then the connection is closed" % what)


def handshake(p, eid=b"proto::fake-client"):
    p.send(frame(tlv(1, eid)))
    f = p.frame()
    expect(f == [(1, CTL)], "the listener answers with its Handshake %r" % (f,))


def clients(path):
    # 1. wrong sync bytes
    p = connect(path)
    p.send(b"_USX" + struct.pack(">I", 5) + tlv(3, b""))
    error_then_close(p, "wrong sync", "sync")
    # 2. a TLV running past the end of its frame
    p = connect(path)
    p.send(b"_USP" + struct.pack(">I", 10) + struct.pack(">BI", 3, 100) + b"abcde")
    error_then_close(p, "TLV past its frame", "TLV")
    # 3. a Handshake whose Endpoint ID is not one
    p = connect(path)
    p.send(frame(tlv(1, b"no-scheme-here")))
    error_then_close(p, "bad Endpoint ID in the Handshake", "Endpoint ID")
    # 4. Records before the Handshake are ignored, unknown TLVs too; the
    # listener echoes every record it gets.
    p = connect(path)
    early = record(b"too early")
    p.send(frame(tlv(3, early)))
    handshake(p)
    p.send(frame(tlv(9, b"unknown type"), tlv(7, b"")))
    late = record(b"after the handshake")
    p.send(frame(tlv(3, late)))
    f = p.frame()
    expect(f == [(3, late)], "only the record after the Handshake is echoed (%d TLVs)" % len(f))
    # 5. an unparseable Record: Error TLV and close [R-UDS.24]
    p.send(frame(tlv(3, b"\xff\xff\xff\xff not protobuf")))
    error_then_close(p, "unparseable Record", "Record")
    # 6. an Error TLV from us closes the session [R-UDS.25]
    p = connect(path)
    handshake(p)
    p.send(frame(tlv(2, b"bye from the fake client")))
    expect(p.eof(), "after our Error TLV the listener closes")


def server(path, mode):
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(4)
    print("LISTENING", flush=True)
    ls.settimeout(15)
    s, _ = ls.accept()
    p = Peer(s)
    if mode == "hs-first":
        p.send(frame(tlv(1, b"proto::fake-server")))
        f = p.frame()
        expect(f == [(1, AGENT)], "the client's Handshake arrived after ours was sent (%r)" % (f,))
        f = p.frame()
        expect(len(f) == 1 and f[0][0] == 3, "then its UDSConnectRecord")
        p.send(frame(tlv(3, b"hello")))
        f = p.frame()
        expect(len(f) == 1 and f[0][0] == 3, "a DisconnectRecord before the close")
        expect(p.eof(), "then the client closes")
    elif mode == "error":
        f = p.frame()
        expect(f == [(1, AGENT)], "the client's Handshake (%r)" % (f,))
        p.send(frame(tlv(2, b"go away, fake server says no")))
        s.close()
    elif mode == "silent":
        f = p.frame()
        expect(f == [(1, AGENT)], "the client's Handshake (%r)" % (f,))
        t0 = time.time()
        expect(p.eof(), "the client gives up and closes")
        print("# gave up after %.1f s" % (time.time() - t0), flush=True)
    os.unlink(path)


mode, path = sys.argv[1], sys.argv[2]
if mode == "clients":
    clients(path)
else:
    server(path, sys.argv[3])
sys.exit(1 if bad else 0)
PYEOF

# ---- both ends ours ----
run exchange "$drv" exchange "$tmp"
run restart "$drv" restart "$tmp"

# ---- broken clients against our listener ----
"$drv" listen "$tmp/l.sock" 2 >"$tmp/listen.out" 2>&1 &
lpid=$!
pids="$pids $lpid"
if wait_for "$tmp/listen.out" LISTENING 10; then
    "$py" "$tmp/fake_uds.py" clients "$tmp/l.sock" >"$tmp/fake-clients.out" 2>&1
    rc=$?
else
    echo "FAIL the listener did not start" >"$tmp/fake-clients.out"
    rc=1
fi
wait "$lpid"
lrc=$?
{
    cat "$tmp/listen.out"
    grep -q '^RECORD .* unparseable' "$tmp/listen.out" &&
        echo "ok   the listener saw the unparseable record and rejected it" ||
        echo "FAIL the listener never saw the unparseable record"
    grep -q '^SESSION-CLOSED lost 2 .*Error TLV sent' "$tmp/listen.out" &&
        echo "ok   the rejected session ended: lost, code 2, Error TLV sent" ||
        echo "FAIL no 'SESSION-CLOSED lost 2' for the rejected session"
    grep -q '^SESSION-CLOSED peer-closed 2 .*bye from the fake client' "$tmp/listen.out" &&
        echo "ok   the Error TLV received closed the session with its text in the detail" ||
        echo "FAIL no 'SESSION-CLOSED peer-closed 2' with the client's text"
    [ "$(grep -c '^RECORD ' "$tmp/listen.out")" -eq 2 ] &&
        echo "ok   two records delivered (none before the handshake)" ||
        echo "FAIL $(grep -c '^RECORD ' "$tmp/listen.out") records delivered, 2 expected"
} >>"$tmp/fake-clients.out"
grep -q '^FAIL' "$tmp/fake-clients.out" && rc=1
[ "$lrc" -eq 0 ] || rc=1
count fake-clients "$rc" "$tmp/fake-clients.out"

# ---- our client against fake servers ----
for m in hs-first error silent; do
    rm -f "$tmp/f.sock"
    "$py" "$tmp/fake_uds.py" server "$tmp/f.sock" "$m" >"$tmp/fsrv-$m.out" 2>&1 &
    fpid=$!
    pids="$pids $fpid"
    wait_for "$tmp/fsrv-$m.out" LISTENING 10
    "$drv" client "$tmp/f.sock" "$m" >"$tmp/fake-server-$m.out" 2>&1
    rc=$?
    wait "$fpid" || rc=1
    cat "$tmp/fsrv-$m.out" >>"$tmp/fake-server-$m.out"
    grep -q '^FAIL' "$tmp/fake-server-$m.out" && rc=1
    count "fake-server-$m" "$rc" "$tmp/fake-server-$m.out"
done

# ---- TLS ----
if "$build/uspsim" certs --out "$tmp/certs" --agents 2 --controller-id proto::uds-controller \
        >"$tmp/certs.out" 2>&1 &&
    "$build/uspsim" certs --out "$tmp/other" --agents 2 --controller-id proto::uds-controller \
        >>"$tmp/certs.out" 2>&1; then
    run tls "$drv" tls "$tmp" "$tmp/certs" "$tmp/other"
else
    cat "$tmp/certs.out" >"$tmp/tls.out"
    count tls 1 "$tmp/tls.out"
fi

# ---- many sessions in one process ----
run scale-1000 "$drv" scale "$tmp" 1000

say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

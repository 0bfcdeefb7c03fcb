#!/bin/sh
# The uspsim command-line front end: --help/--version, every request kind
# through `uspsim encode` and back through `uspsim decode` (fields checked in
# the JSON), bad usage (exit 2) and bad input to decode (exit 1 with a
# message naming the field, never a crash). Usage: test-cli.sh BUILD_DIR
set -u
build=${1:-build}
U=$build/uspsim
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ ! -x "$U" ]; then
    echo "test-cli: $U is missing (build it first)"
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
passes=0
fails=0

pass() { passes=$((passes + 1)); }
fail() {
    fails=$((fails + 1))
    echo "FAIL: $*"
    [ -s "$tmp/err" ] && sed 's/^/    stderr: /' "$tmp/err" | head -n 5
}

# run ARGS...: runs uspsim, keeping stdout, stderr and the exit status.
run() {
    "$U" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
# run_in FILE ARGS...: the same with FILE on standard input.
run_in() {
    in=$1
    shift
    "$U" "$@" <"$in" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

expect_rc() { # WANT DESCRIPTION
    if [ "$rc" -eq "$1" ]; then pass; else fail "$2: exit status $rc, expected $1"; fi
}
# expect_text FILE TEXT DESCRIPTION: FILE contains TEXT (a fixed string).
expect_text() {
    if grep -qF -- "$2" "$1"; then pass; else fail "$3: no '$2' in $(basename "$1")"; fi
}
# expect_usage DESCRIPTION TEXT ARGS...: exit 2, TEXT and the usage on stderr.
expect_usage() {
    desc=$1
    text=$2
    shift 2
    run "$@"
    expect_rc 2 "$desc"
    expect_text "$tmp/err" "$text" "$desc"
    if grep -qE '^(usage|request|requests):' "$tmp/err"; then pass; else fail "$desc: no usage text"; fi
    if [ -s "$tmp/out" ]; then fail "$desc: wrote to stdout"; else pass; fi
}

# Python over the decoded JSON: j is the Record, m the Msg, q the request
# body (or response body), and the expression must be true.
cat >"$tmp/check.py" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
ctx = j.get("no_session_context") or j.get("session_context") or {}
m = ctx.get("msg", {})
b = m.get("body", {})
q = b.get("request") or b.get("response") or {}
ok = eval(sys.argv[2])
if not ok:
    print("json was:", json.dumps(j)[:600])
sys.exit(0 if ok else 1)
EOF
jcheck() { # DESCRIPTION EXPRESSION
    if "$PY" "$tmp/check.py" "$tmp/out" "$2" >"$tmp/py" 2>&1; then
        pass
    else
        fail "$1: JSON check failed: $2"
        sed 's/^/    /' "$tmp/py"
    fi
}

FROM=proto::controller-1
TO=proto::agent-1
# roundtrip DESCRIPTION EXPRESSION REQUEST...: encode, decode, check.
roundtrip() {
    desc=$1
    expr=$2
    shift 2
    "$U" encode --from "$FROM" --to "$TO" --msg-id "m-$desc" "$@" >"$tmp/rec.bin" 2>"$tmp/err"
    rc=$?
    expect_rc 0 "encode $desc"
    run_in "$tmp/rec.bin" decode
    expect_rc 0 "decode $desc"
    jcheck "$desc" "j['from_id'] == '$FROM' and j['to_id'] == '$TO' and j['version'] == '1.4' \
and m['header']['msg_id'] == 'm-$desc' and ($expr)"
}

# ---- help and version -------------------------------------------------

run --help
expect_rc 0 "--help"
expect_text "$tmp/out" "usage: uspsim" "--help"
expect_text "$tmp/out" "decode" "--help lists decode"
expect_text "$tmp/out" "encode" "--help lists encode"

run --version
expect_rc 0 "--version"
if grep -qE '^uspsim [0-9]+\.[0-9]+\.[0-9]+' "$tmp/out"; then pass; else fail "--version output"; fi
if [ -f VERSION ]; then expect_text "$tmp/out" "uspsim $(cat VERSION)" "--version is VERSION"; fi

for c in decode encode; do
    run "$c" --help
    expect_rc 0 "$c --help"
    expect_text "$tmp/out" "usage: uspsim $c" "$c --help"
    run help "$c"
    expect_rc 0 "help $c"
    expect_text "$tmp/out" "usage: uspsim $c" "help $c"
done
run decode -h
expect_text "$tmp/out" "--base64" "decode -h lists its options"
run encode --help
for w in --from --to --version --msg-id --hex get set add delete operate instances gsdm gsp \
    notify-resp; do
    expect_text "$tmp/out" "$w" "encode --help mentions $w"
done
run encode --from "$FROM" --to "$TO" set --help
expect_rc 0 "encode set --help"
expect_text "$tmp/out" "set [--allow-partial] [--required]" "encode set --help"
expect_text "$tmp/out" "PARAM:=VALUE" "encode set --help explains required"
run encode gsdm --help
expect_rc 0 "encode gsdm --help without EIDs"
expect_text "$tmp/out" "--unique-keys" "encode gsdm --help"

# ---- bad usage: exit 2 with the usage ----------------------------------

expect_usage "no command" "missing COMMAND"
expect_usage "unknown command" "unknown command 'frobnicate'" frobnicate
expect_usage "unknown global option" "unknown option '--frob'" --frob
expect_usage "help of an unknown command" "unknown command 'nope'" help nope
expect_usage "decode unknown option" "unknown option '--nope'" decode --nope
expect_usage "decode two files" "unexpected argument 'b'" decode a b
expect_usage "decode --hex --base64" "--hex and --base64 exclude each other" decode --hex --base64
expect_usage "decode flag with value" "option --hex takes no value" decode --hex=1
expect_usage "encode without --from" "option --from is required" encode --to "$TO" get Device.
expect_usage "encode without --to" "option --to is required" encode --from "$FROM" get Device.
expect_usage "encode --to without value" "option --to needs a value" encode --from "$FROM" --to
expect_usage "encode without request" "missing REQUEST" encode --from "$FROM" --to "$TO"
expect_usage "encode empty --from" "--from: the Endpoint ID is empty" \
    encode --from "" --to "$TO" get Device.
expect_usage "encode bad --from" "--from: 'not-an-eid' is not a valid Endpoint ID" \
    encode --from not-an-eid --to "$TO" get Device.
expect_usage "encode bad --to" "--to: 'oui:xyz:1' is not a valid Endpoint ID" \
    encode --from "$FROM" --to oui:xyz:1 get Device.
expect_usage "encode bad --version" "--version: '1' is not Major.Minor" \
    encode --from "$FROM" --to "$TO" --version 1 get Device.
expect_usage "encode empty --msg-id" "--msg-id: the msg_id must not be empty" \
    encode --from "$FROM" --to "$TO" --msg-id "" get Device.
expect_usage "unknown request" "unknown request 'fetch'" encode --from "$FROM" --to "$TO" fetch X.
expect_usage "get without path" "get: missing arguments: expected PATH..." \
    encode --from "$FROM" --to "$TO" get
expect_usage "get bad --max-depth" "get: option --max-depth: 'deep' is not a whole number" \
    encode --from "$FROM" --to "$TO" get --max-depth deep Device.
expect_text "$tmp/err" "request: get [--max-depth N] PATH..." "get usage after an error"
expect_usage "set without object" "set: 'Enable=1': no OBJPATH before it" \
    encode --from "$FROM" --to "$TO" set Enable=1
expect_usage "set missing =" "is neither an object path ending in '.' nor PARAM=VALUE" \
    encode --from "$FROM" --to "$TO" set Device.X.Enable 1
expect_usage "add unknown option" "add: unknown option '--max-depth'" \
    encode --from "$FROM" --to "$TO" add --max-depth 1 Device.X.
expect_usage "delete not an object" "delete: OBJPATH 'Device.X.1' must end in '.'" \
    encode --from "$FROM" --to "$TO" delete Device.X.1
expect_usage "operate not a command" "operate: CMDPATH 'Device.Reboot' must end in '()'" \
    encode --from "$FROM" --to "$TO" operate Device.Reboot
expect_usage "operate bad argument" "operate: 'Host' is not ARG=VALUE" \
    encode --from "$FROM" --to "$TO" operate Device.X.Ping\(\) Host
expect_usage "instances no path" "instances: missing arguments" \
    encode --from "$FROM" --to "$TO" instances
expect_usage "gsdm unknown flag" "gsdm: unknown option '--no-param'" \
    encode --from "$FROM" --to "$TO" gsdm --no-param Device.
expect_usage "gsp bad version" "gsp: VERSIONS: 'one' is not a version" \
    encode --from "$FROM" --to "$TO" gsp 1.3,one
expect_usage "notify-resp two ids" "notify-resp: unexpected argument 'b'" \
    encode --from "$FROM" --to "$TO" notify-resp a b

# ---- every request kind, encoded and decoded back -----------------------

roundtrip get "m['header']['msg_type'] == 'GET' and \
q['get']['param_paths'] == ['Device.DeviceInfo.', 'Device.Time.Enable'] and \
q['get']['max_depth'] == 2" get --max-depth 2 Device.DeviceInfo. Device.Time.Enable
roundtrip get-all "q['get']['param_paths'] == ['Device.'] and 'max_depth' not in q['get']" \
    get Device.
roundtrip set "m['header']['msg_type'] == 'SET' and 'allow_partial' not in q['set'] and \
[u['obj_path'] for u in q['set']['update_objs']] == ['Device.WiFi.SSID.1.', 'Device.Time.'] and \
q['set']['update_objs'][0]['param_settings'] == [{'param': 'Enable', 'value': 'true', \
'required': True}, {'param': 'SSID', 'value': 'my home'}] and \
q['set']['update_objs'][1]['param_settings'] == [{'param': 'NTPServer1', 'value': 'a=b'}]" \
    set Device.WiFi.SSID.1. Enable:=true 'SSID=my home' Device.Time.NTPServer1=a=b
roundtrip set-partial "q['set']['allow_partial'] is True and \
q['set']['update_objs'][0]['obj_path'] == 'Device.X.[Name==\"a\"].' and \
q['set']['update_objs'][0]['param_settings'][0]['required'] is True" \
    set --allow-partial --required 'Device.X.[Name=="a"].Enable=0'
roundtrip add "m['header']['msg_type'] == 'ADD' and q['add']['allow_partial'] is True and \
[c['obj_path'] for c in q['add']['create_objs']] == ['Device.NAT.PortMapping.', 'Device.IP.Interface.'] and \
q['add']['create_objs'][0]['param_settings'] == [{'param': 'Alias', 'value': 'web', 'required': True}, \
{'param': 'ExternalPort', 'value': '8080'}] and 'param_settings' not in q['add']['create_objs'][1]" \
    add --allow-partial Device.NAT.PortMapping. Alias:=web ExternalPort=8080 Device.IP.Interface.
roundtrip delete "m['header']['msg_type'] == 'DELETE' and \
q['delete']['obj_paths'] == ['Device.NAT.PortMapping.1.', 'Device.NAT.PortMapping.2.'] and \
'allow_partial' not in q['delete']" delete Device.NAT.PortMapping.1. Device.NAT.PortMapping.2.
roundtrip delete-partial "q['delete']['allow_partial'] is True" delete --allow-partial Device.X.1.
roundtrip operate "m['header']['msg_type'] == 'OPERATE' and \
q['operate']['command'] == 'Device.IP.Diagnostics.IPPing()' and \
q['operate']['command_key'] == 'k1' and q['operate']['send_resp'] is True and \
q['operate']['input_args'] == {'Host': '192.0.2.1', 'NumberOfRepetitions': '3'}" \
    operate --key k1 'Device.IP.Diagnostics.IPPing()' Host=192.0.2.1 NumberOfRepetitions=3
roundtrip operate-no-resp "q['operate'].get('send_resp', False) is False and \
'command_key' not in q['operate'] and 'input_args' not in q['operate']" \
    operate --no-resp 'Device.Reboot()'
roundtrip instances "m['header']['msg_type'] == 'GET_INSTANCES' and \
q['get_instances']['obj_paths'] == ['Device.WiFi.SSID.'] and \
q['get_instances']['first_level_only'] is True" instances --first-level Device.WiFi.SSID.
roundtrip gsdm "m['header']['msg_type'] == 'GET_SUPPORTED_DM' and \
q['get_supported_dm']['obj_paths'] == ['Device.WiFi.'] and \
q['get_supported_dm']['return_params'] is True and q['get_supported_dm']['return_commands'] is True \
and q['get_supported_dm']['return_events'] is True and \
'return_unique_key_sets' not in q['get_supported_dm'] and 'first_level_only' not in q['get_supported_dm']" \
    gsdm Device.WiFi.
roundtrip gsdm-flags "q['get_supported_dm']['first_level_only'] is True and \
'return_params' not in q['get_supported_dm'] and 'return_commands' not in q['get_supported_dm'] and \
'return_events' not in q['get_supported_dm'] and q['get_supported_dm']['return_unique_key_sets'] is True" \
    gsdm --first-level --no-params --no-commands --no-events --unique-keys Device.
roundtrip gsp "m['header']['msg_type'] == 'GET_SUPPORTED_PROTO' and \
q['get_supported_protocol']['controller_supported_protocol_versions'] == '1.3,1.4'" gsp 1.3,1.4
roundtrip gsp-default "q['get_supported_protocol']['controller_supported_protocol_versions'] == \
'1.0,1.1,1.2,1.3,1.4'" gsp
roundtrip notify-resp "m['header']['msg_type'] == 'NOTIFY_RESP' and \
q['notify_resp']['subscription_id'] == 'sub-7'" notify-resp sub-7
roundtrip aliases "m['header']['msg_type'] == 'GET_INSTANCES'" get-instances Device.X.

# --version of the Record, a generated msg_id, hex and base64 output.
"$U" encode --from "$FROM" --to "$TO" --version 1.2 get Device. >"$tmp/rec.bin" 2>"$tmp/err"
run_in "$tmp/rec.bin" decode --compact
expect_rc 0 "decode --compact"
if [ "$(wc -l <"$tmp/out")" -eq 1 ]; then pass; else fail "--compact is not one line"; fi
jcheck "--version 1.2" "j['version'] == '1.2' and \
__import__('re').fullmatch(r'uspsim-[0-9]+-[0-9a-f]{8}', m['header']['msg_id'])"
id1=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["no_session_context"]["msg"]["header"]["msg_id"])' <"$tmp/out")
"$U" encode --from "$FROM" --to "$TO" get Device. | "$U" decode --compact >"$tmp/out2"
id2=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["no_session_context"]["msg"]["header"]["msg_id"])' <"$tmp/out2")
if [ -n "$id1" ] && [ "$id1" != "$id2" ]; then pass; else fail "generated msg_ids '$id1' '$id2'"; fi

"$U" encode --from "$FROM" --to "$TO" --hex --msg-id hx get Device. >"$tmp/rec.hex" 2>"$tmp/err"
rc=$?
expect_rc 0 "encode --hex"
if grep -qxE '[0-9a-f]+' "$tmp/rec.hex"; then pass; else fail "encode --hex is not one hex line"; fi
fold -w 7 "$tmp/rec.hex" >"$tmp/rec.hexw"
run_in "$tmp/rec.hexw" decode --hex
expect_rc 0 "decode --hex with whitespace"
jcheck "decode --hex" "m['header']['msg_id'] == 'hx'"
"$PY" -c 'import base64,sys; print(base64.encodebytes(bytes.fromhex(sys.stdin.read())).decode())' \
    <"$tmp/rec.hex" >"$tmp/rec.b64"
run decode --base64 "$tmp/rec.b64"
expect_rc 0 "decode --base64 FILE"
jcheck "decode --base64" "m['header']['msg_id'] == 'hx' and q['get']['param_paths'] == ['Device.']"
run decode - <"$tmp/rec.bin"
expect_rc 0 "decode -"

# A session_context Record holding one whole payload is decoded too.
"$PY" - "$tmp/rec.hex" >"$tmp/sess.hex" <<'EOF'
import json, subprocess, sys
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out
def field(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data
rec = bytes.fromhex(open(sys.argv[1]).read())
# take the payload out of the no_session_context Record by walking it
i, payload = 0, None
while i < len(rec):
    tag = rec[i]; i += 1
    n = 0; s = 0
    while True:
        c = rec[i]; i += 1; n |= (c & 0x7f) << s; s += 7
        if c < 0x80: break
    body = rec[i:i + n]; i += n
    if tag >> 3 == 7:
        payload = body[2:] if body[1] < 0x80 else body[3:]
sess = varint(1 << 3) + varint(42) + varint(2 << 3) + varint(1) + field(7, payload)
out = field(1, b"1.4") + field(2, b"proto::agent-1") + field(3, b"proto::controller-1") + field(8, sess)
print(out.hex())
EOF
run decode --hex "$tmp/sess.hex"
expect_rc 0 "decode session_context"
jcheck "session_context msg" "j['session_context']['session_id'] == 42 and \
m['header']['msg_id'] == 'hx'"

# Binary is never written to a terminal.
"$PY" - "$U" >"$tmp/tty" 2>&1 <<'EOF'
import os, pty, subprocess, sys
master, slave = pty.openpty()
p = subprocess.run([sys.argv[1], "encode", "--from", "proto::a", "--to", "proto::b", "get",
                    "Device."], stdout=slave, stderr=subprocess.PIPE)
os.close(slave)
os.set_blocking(master, False)
try:
    written = os.read(master, 4096)
except OSError:
    written = b""
print(p.returncode, p.stderr.decode().strip(), len(written))
EOF
if grep -q '^1 .*refusing to write a binary Record to a terminal.* 0$' "$tmp/tty"; then pass; else
    fail "encode to a terminal: $(cat "$tmp/tty")"
fi

# ---- bad input to decode: exit 1 with a clear message ---------------------

# expect_bad DESCRIPTION TEXT FILE [OPTIONS...]: exit 1, TEXT on stderr.
expect_bad() {
    desc=$1
    text=$2
    f=$3
    shift 3
    run_in "$f" decode "$@"
    expect_rc 1 "$desc"
    expect_text "$tmp/err" "$text" "$desc"
    if [ -s "$tmp/out" ]; then fail "$desc: printed JSON"; else pass; fi
}

: >"$tmp/empty"
expect_bad "empty input" "empty input" "$tmp/empty"
printf ' \n\t\n' >"$tmp/blank"
expect_bad "blank hex" "empty input" "$tmp/blank" --hex
printf '0a0g' >"$tmp/badhex"
expect_bad "bad hex" "bad hex: 'g' at offset 3 is not a hex digit" "$tmp/badhex" --hex
printf '0a0' >"$tmp/oddhex"
expect_bad "odd hex" "bad hex: an odd number of hex digits (3)" "$tmp/oddhex" --hex
printf 'Cg*=' >"$tmp/badb64"
expect_bad "bad base64" "bad base64: '*' at offset 2 is not a base64 character" "$tmp/badb64" \
    --base64
printf 'Cg==Cg==' >"$tmp/padb64"
expect_bad "base64 after padding" "bad base64: data after the '=' padding" "$tmp/padb64" --base64
printf 'C' >"$tmp/shortb64"
expect_bad "base64 one char" "bad base64" "$tmp/shortb64" --base64
run decode "$tmp/no-such-file"
expect_rc 1 "missing file"
expect_text "$tmp/err" "cannot open" "missing file"

# Every truncation of a good Record: exit 1, a message naming a record
# field, never a crash.
"$U" encode --from "$FROM" --to "$TO" --msg-id trunc set Device.X. A=1 >"$tmp/full.bin"
size=$(wc -c <"$tmp/full.bin")
n=1
crashed=0
unnamed=0
while [ "$n" -lt "$size" ]; do
    head -c "$n" "$tmp/full.bin" >"$tmp/cut.bin"
    run_in "$tmp/cut.bin" decode
    if [ "$rc" -ge 128 ] || [ "$rc" -ne 1 ]; then
        crashed=$((crashed + 1))
        echo "    truncated to $n bytes: exit $rc"
    fi
    grep -qE 'bad (Record|Msg in the payload): (record|msg)(\.[a-z_<>0-9 ]+)+: ' "$tmp/err" ||
        { unnamed=$((unnamed + 1)); echo "    truncated to $n bytes: $(cat "$tmp/err")"; }
    n=$((n + 1))
done
if [ "$crashed" -eq 0 ]; then pass; else fail "$crashed truncations did not exit 1"; fi
if [ "$unnamed" -eq 0 ]; then pass; else fail "$unnamed truncations did not name a field"; fi

head -c 20 "$tmp/full.bin" >"$tmp/cut.bin"
expect_bad "truncated in to_id" \
    "bad Record: record.to_id: the field at offset 5 has length 14, past the end (13 bytes left)" \
    "$tmp/cut.bin"

# A good Record around a payload that is not a Msg; --lenient prints it.
printf '0a03312e341203703a611a03703a623a0412020aff' >"$tmp/badpl.hex"
expect_bad "bad payload" "bad Msg in the payload: msg.header: the length of the field at offset 0 is cut short" "$tmp/badpl.hex" --hex
run decode --hex --lenient "$tmp/badpl.hex"
expect_rc 0 "bad payload --lenient"
expect_text "$tmp/err" "warning: bad Msg in the payload" "bad payload --lenient"
jcheck "bad payload --lenient" "j['no_session_context']['payload'] == '0aff' and 'msg' not in \
j['no_session_context']"

# A Record that decodes but breaks a rule: the field named, --lenient prints.
"$U" encode --from "$FROM" --to "$TO" --version 9.9 get Device. >"$tmp/v99.bin" 2>"$tmp/err"
expect_text "$tmp/err" "warning: USP version 9.9 is not one of" "encode --version 9.9"
expect_bad "unsupported version" "bad Record: record.version: " "$tmp/v99.bin"
expect_text "$tmp/err" "(USP error 7104" "unsupported version gives the USP code"
run_in "$tmp/v99.bin" decode --lenient
expect_rc 0 "unsupported version --lenient"
jcheck "unsupported version --lenient" "j['version'] == '9.9' and q['get']['param_paths'] == ['Device.']"

# Random bytes: never a crash.
"$PY" -c '
import random, sys
r = random.Random(7)
for i in range(40):
    open(sys.argv[1] + "/rnd%d" % i, "wb").write(bytes(r.randrange(256) for _ in range(r.randrange(1, 64))))
' "$tmp"
i=0
while [ "$i" -lt 40 ]; do
    run_in "$tmp/rnd$i" decode
    if [ "$rc" -ge 128 ]; then
        fail "random input $i: exit $rc"
    elif [ "$rc" -ne 0 ] && [ ! -s "$tmp/err" ]; then
        fail "random input $i: exit $rc without a message"
    else
        pass
    fi
    i=$((i + 1))
done

echo "test-cli: $passes passed, $fails failed"
[ "$fails" -eq 0 ]

#!/bin/sh
# shellcheck disable=SC2086 # $U and option strings are meant to split
# The bindings from the command line: `uspsim agents` and `uspsim controller`
# with --mtp / --broker / --controller / --agent / --listen, real peers on
# 127.0.0.1 (free ports, stopped by PID):
#   ws-listen    a controller shell accepting agents (--listen ws://...),
#                5 agents connecting (--controller): WebSocketConnectRecords,
#                every Boot! acknowledged (the fleet's counters), every
#                request kind from the shell with its output, the controller
#                killed and started again on its port: the agents come back
#                within their back-off and answer again.
#   ws-agents    every agent listening on its own port (--listen template),
#                the controller connecting to one (--agent): -e requests.
#   stomp        a real RabbitMQ (tests/integration/rabbitmq.sh): agents and
#                a controller on it, Boot!s acknowledged, every request kind
#                with -e, the STOMPConnectRecord's destination used.
#   wss          the same over TLS with certificates of `uspsim certs`; an
#                agent with another CA's certificate, or with a certificate
#                naming another agent (wrong SAN), gets no session (also
#                over UDS with TLS).
#   uds          the controller accepting at unix:PATH, agents connecting:
#                UDSConnectRecords, Boot!s acknowledged, every request kind;
#                the same with TLS (--uds-tls, certificates of `uspsim
#                certs`), and agents whose certificates come from another CA
#                refused.
#   coap         legacy CoAP: the controller's and the agents' own servers,
#                Boot!s acknowledged, every request kind, versions 1.0-1.2
#                only; coaps (DTLS) with certificates.
#   mqtts        a mosquitto with a TLS listener requiring client
#                certificates: agents and -e requests over mqtts, a
#                controller with another CA's certificate refused.
#   stomps       RabbitMQ's TLS STOMP listener: agents and a request.
#   usage        mismatched or missing options give exit 2 and a sentence.
# Usage: sh tests/integration/test-mtp-cli.sh BUILD
# Prints one line per check; "mtp-cli: N passed, M failed"; non-zero on failure.
set -u
fl_name=mtp-cli
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fl_init "${1:-build}"
U=$fl_uspsim
tmp=$fl_tmp
A1=os::012345-SIM000001

check() { # check NAME COMMAND...
    _n=$1
    shift
    if "$@"; then
        fl_passed=$((fl_passed + 1))
        fl_say "PASS $_n"
    else
        fl_failed=$((fl_failed + 1))
        fl_say "FAIL $_n"
        for _f in out err; do
            [ -s "$tmp/$_f" ] && sed "s/^/    $_f: /" "$tmp/$_f" | tail -n 12
        done
    fi
}
has() { grep -qF -- "$1" "$tmp/${2:-out}"; }
rc_is() { [ "$rc" -eq "$1" ]; }
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
# jq_ FILE EXPR: a Python expression over the JSON object `d` in FILE.
jq_() {
    "$fl_py" - "$1" "$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
}
# fleet_has FILE EXPR [S]: until the fleet's last counters satisfy EXPR.
fleet_has() {
    _i=0
    while [ $_i -lt $((${3:-20} * 10)) ]; do
        if [ -s "$1" ]; then
            tail -n 1 "$1" >"$tmp/stats.json"
            jq_ "$tmp/stats.json" "$2" 2>/dev/null && return 0
        fi
        sleep 0.1
        _i=$((_i + 1))
    done
    return 1
}

# The requests every binding runs, as -e options or shell lines, and what
# their answers must show.
REQS='get Device.DeviceInfo.SerialNumber
set Device.DeviceInfo.FriendlyName=mtp-cli
get Device.DeviceInfo.FriendlyName
add Device.DNS.Client.Server. DNSServer=192.0.2.53
instances Device.DNS.Client.Server.
operate Device.SelfTestDiagnostics()
gsdm --first-level Device.DeviceInfo.
gsp'
check_answers() { # LABEL SERIAL [VERSIONS]
    check "$1-get" has "Device.DeviceInfo.SerialNumber = $2"
    check "$1-set" has "Device.DeviceInfo.FriendlyName = mtp-cli"
    check "$1-add" grep -qE '^created Device\.DNS\.Client\.Server\.[0-9]+\.$' "$tmp/out"
    check "$1-instances" has "DNSServer=192.0.2.53"
    check "$1-operate" grep -qE '^Device\.SelfTestDiagnostics\(\): running as Device\.LocalAgent\.Request\.[0-9]+\.$' "$tmp/out"
    check "$1-gsdm" has "  Manufacturer  parameter read-only string"
    check "$1-gsp" has "USP versions ${3:-1.0,1.1,1.2,1.3,1.4}"
}
exec_args() { # the requests as -e options, one per line for `set --`
    echo "$REQS" | while IFS= read -r l; do printf -- '-e\n%s\n' "$l"; done
}
run_reqs() { # run the controller command given with every request as -e
    _old_ifs=$IFS
    IFS='
'
    # shellcheck disable=SC2046
    set -- "$@" $(exec_args)
    IFS=$_old_ifs
    run "$@"
}

# A controller shell reading from a FIFO: shell_start NAME ARGS...;
# shell_send LINE; shell_stop.
shell_start() {
    _sh=$1
    shift
    rm -f "$tmp/$_sh.in"
    mkfifo "$tmp/$_sh.in"
    "$U" controller "$@" <"$tmp/$_sh.in" >"$tmp/$_sh.out" 2>"$tmp/$_sh.err" &
    shell_pid=$!
    fl_track "$shell_pid"
    exec 7>"$tmp/$_sh.in"
}
shell_send() {
    printf '%s\n' "$1" >&7
}
shell_stop() {
    exec 7>&-
    _i=0
    while kill -0 "$shell_pid" 2>/dev/null && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    fl_kill_pid "$shell_pid"
    fl_untrack "$shell_pid"
}
shell_kill() {
    kill -9 "$shell_pid" 2>/dev/null
    wait "$shell_pid" 2>/dev/null
    exec 7>&-
    fl_untrack "$shell_pid"
}

# shell_reqs SHELL EID: the requests in the shell, then `agents`; waits
# for the agents' list.
shell_reqs() {
    shell_send "use $2"
    echo "$REQS" | while IFS= read -r l; do shell_send "$l"; done
    shell_send "agents"
    fl_wait_for "$tmp/$1.out" " agents$" 20
    cp "$tmp/$1.out" "$tmp/out"
    cp "$tmp/$1.err" "$tmp/err"
}
# p2p_case LABEL N CONTROLLER-ARGS... -- AGENT-ARGS...: a controller shell
# accepting N agents; Boot!s acknowledged, every request kind from the shell.
p2p_case() {
    _l=$1
    _n=$2
    shift 2
    _cargs=""
    while [ "$1" != "--" ]; do
        _cargs="$_cargs $1"
        shift
    done
    shift
    shell_start "$_l" $_cargs --timeout 5
    sleep 0.5
    "$U" agents --count "$_n" "$@" --quiet --stats-json "$tmp/$_l.json" >"$tmp/$_l-fleet.out" 2>&1 &
    p2p_fleet=$!
    fl_track "$p2p_fleet"
    fleet_has "$tmp/$_l.json" "d['boots_sent'] == $_n and d['notifs_acked'] == $_n" 25
    rc=$?
    [ -s "$tmp/$_l.json" ] && tail -n 1 "$tmp/$_l.json" >"$tmp/out"
    cat "$tmp/$_l-fleet.out" >"$tmp/err" 2>/dev/null
    check "$_l-boots-acked" rc_is 0
    shell_reqs "$_l" os::012345-SIM000002
}
p2p_end() {
    shell_stop
    fl_stop "$p2p_fleet" 20
    rc=$?
    fl_untrack "$p2p_fleet"
    check "$1-clean-stop" rc_is 0
}

# Certificates for every TLS case: ours, and another CA's.
"$U" certs --out "$tmp/pki" --agents 5 >"$tmp/certs.out" 2>&1 ||
    fl_fail_setup "uspsim certs failed: $(cat "$tmp/certs.out")"
"$U" certs --out "$tmp/pki-other" --agents 5 >"$tmp/certs.out" 2>&1 ||
    fl_fail_setup "uspsim certs failed: $(cat "$tmp/certs.out")"

# ---- WebSocket: the controller listens ------------------------------------------
P=$(fl_free_port)
WS=ws://127.0.0.1:$P/usp
shell_start ws1 --listen "$WS" --watch --timeout 5
fl_wait_port "$P" || fl_fail_setup "the controller did not listen at $WS: $(cat "$tmp/ws1.err")"
"$U" agents --count 5 --controller "$WS" --keepalive 5 --quiet --stats-json "$tmp/ws.json" \
    >"$tmp/ws-fleet.out" 2>&1 &
ws_fleet=$!
fl_track "$ws_fleet"
fleet_has "$tmp/ws.json" "d['boots_sent'] == 5 and d['notifs_acked'] == 5" 20
rc=$?
cp "$tmp/ws.json" "$tmp/out" 2>/dev/null
check ws-listen-boots-acked rc_is 0
check ws-listen-connect-records fl_wait_for "$tmp/ws1.out" "\[os::012345-SIM000005\] connected, WebSocket" 5
shell_send "use $A1"
echo "$REQS" | while IFS= read -r l; do shell_send "$l"; done
shell_send "agents"
fl_wait_for "$tmp/ws1.out" "5 agents" 20
cp "$tmp/ws1.out" "$tmp/out"
cp "$tmp/ws1.err" "$tmp/err"
check_answers ws-listen GW00000001
check ws-listen-sessions [ "$(grep -cE '^os::012345-SIM00000[1-5] +connected +1\.4 .* up$' "$tmp/out")" -eq 5 ]
# The controller goes away (killed) and comes back on the same port.
shell_kill
t0=$(fl_now_ms)
shell_start ws2 --listen "$WS" --watch --timeout 5
fl_wait_port "$P" || fl_fail_setup "the controller did not listen again at $WS"
fl_wait_for "$tmp/ws2.out" "\[$A1\] connected, WebSocket" 40
rc=$?
t1=$(fl_now_ms)
check ws-listen-back rc_is 0
fl_say "agents back after $((t1 - t0)) ms"
shell_send "use $A1"
shell_send "get Device.DeviceInfo.FriendlyName"
fl_wait_for "$tmp/ws2.out" "FriendlyName = mtp-cli" 10
rc=$?
check ws-listen-answers-again rc_is 0
shell_stop
fl_stop "$ws_fleet" 20
rc=$?
fl_untrack "$ws_fleet"
check ws-fleet-clean-stop rc_is 0

# ---- WebSocket: every agent listens, the controller connects ----------------------
# Agent n listens at base + n: a base (a multiple of 10) below the ephemeral
# range, so that no outgoing connection holds one of the ports, with
# base + 1 .. base + 9 free now.
base=$("$fl_py" - <<'END_PY'
import random, socket
for _ in range(200):
    b = random.randrange(1200, 3200) * 10
    try:
        for p in range(b + 1, b + 10):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            s.close()
        print(b)
        break
    except OSError:
        continue
END_PY
)
[ -n "$base" ] || fl_fail_setup "no free port range for the listening agents"
"$U" agents --count 3 --listen "ws://127.0.0.1:$((base / 10)){n}/usp" --quiet \
    >"$tmp/wsa-fleet.out" 2>&1 &
wsa_fleet=$!
fl_track "$wsa_fleet"
fl_wait_port "$((base + 2))" 10
run_reqs "$U" controller --agent "ws://127.0.0.1:$((base + 2))/usp" --to os::012345-SIM000002 \
    --timeout 5
check ws-agents-exit rc_is 0
check_answers ws-agents GW00000002
run "$U" controller --agent "ws://127.0.0.1:$((base + 3))/usp" --agent "ws://127.0.0.1:$((base + 1))/usp" \
    --to os::012345-SIM000003 -e 'get Device.DeviceInfo.SerialNumber'
check ws-agents-two-sessions has "SerialNumber = GW00000003"
fl_stop "$wsa_fleet" 20
rc=$?
fl_untrack "$wsa_fleet"
check ws-agents-clean-stop rc_is 0

# ---- STOMP through RabbitMQ ------------------------------------------------------------
# shellcheck source=tests/integration/rabbitmq.sh
. "$fl_here/rabbitmq.sh"
if ! rmq_check; then
    check stomp-broker-installed false
    fl_say "RabbitMQ: $rmq_why"
elif ! {
    rmq_tls_dir="$tmp/pki"
    rmq_start "$tmp/rmq" 60
}; then
    check stomp-broker-started false
    fl_say "RabbitMQ: $rmq_why"
    rmq_log | tail -n 5
else
    fl_track "$rmq_pid"
    [ -n "${rmq_epmd_pid:-}" ] && fl_track "$rmq_epmd_pid"
    SB=stomp://guest:guest@127.0.0.1:$rmq_stomp_port
    shell_start st1 --broker "$SB" --watch --timeout 5
    sleep 1
    "$U" agents --count 5 --broker "$SB" --keepalive 10 --quiet --stats-json "$tmp/st.json" \
        >"$tmp/st-fleet.out" 2>&1 &
    st_fleet=$!
    fl_track "$st_fleet"
    fleet_has "$tmp/st.json" "d['boots_sent'] == 5 and d['notifs_acked'] == 5" 30
    rc=$?
    cp "$tmp/st.json" "$tmp/out" 2>/dev/null
    check stomp-boots-acked rc_is 0
    check stomp-connect-records fl_wait_for "$tmp/st1.out" "\[$A1\] connected, STOMP, destination /queue/usp.agent.os::012345-SIM000001" 5
    shell_stop
    run_reqs "$U" controller --broker "$SB" --to os::012345-SIM000004 --timeout 5
    check stomp-exit rc_is 0
    check_answers stomp GW00000004
    fl_stop "$st_fleet" 20
    rc=$?
    fl_untrack "$st_fleet"
    check stomp-clean-stop rc_is 0
    # The same over TLS (RabbitMQ's STOMP TLS listener).
    SS=stomps://guest:guest@127.0.0.1:$rmq_stomps_port
    "$U" agents --count 2 --broker "$SS" --certs "$tmp/pki" --quiet --stats-json "$tmp/sts.json" \
        >"$tmp/sts-fleet.out" 2>&1 &
    st_fleet=$!
    fl_track "$st_fleet"
    fleet_has "$tmp/sts.json" "d['connected'] == 2" 30
    run_reqs "$U" controller --broker "$SS" --certs "$tmp/pki" --to os::012345-SIM000001 --timeout 5
    check stomps-exit rc_is 0
    check_answers stomps GW00000001
    fl_stop "$st_fleet" 20
    fl_untrack "$st_fleet"
    rmq_stop
    fl_untrack "$rmq_pid"
fi

# ---- WebSocket over TLS: the controller accepts agents with certificates ----------
WSP=$(fl_free_port)
p2p_case wss 3 --listen "wss://127.0.0.1:$WSP/usp" --certs "$tmp/pki" -- \
    --controller "wss://127.0.0.1:$WSP/usp" --certs "$tmp/pki"
check_answers wss GW00000002
"$U" agents --count 1 --first-index 4 --controller "wss://127.0.0.1:$WSP/usp" \
    --certs "$tmp/pki-other" --quiet --stats-json "$tmp/wss-bad.json" >"$tmp/wss-bad.out" 2>&1 &
bad_fleet=$!
fl_track "$bad_fleet"
sleep 4
tail -n 1 "$tmp/wss-bad.json" >"$tmp/out" 2>/dev/null
check wss-untrusted-refused jq_ "$tmp/out" "d['connected'] == 0 and d['notifs_acked'] == 0"
fl_stop "$bad_fleet" 20
fl_untrack "$bad_fleet"
# An agent whose certificate names another agent (the wrong-san variant:
# agent n carries agent n+1's Endpoint ID) is refused too [R-SEC.0a].
"$U" certs --out "$tmp/pki" --agents 5 --variant wrong-san >"$tmp/certs.out" 2>&1 ||
    fl_fail_setup "uspsim certs --variant wrong-san failed: $(cat "$tmp/certs.out")"
"$U" agents --count 1 --first-index 4 --controller "wss://127.0.0.1:$WSP/usp" \
    --ca "$tmp/pki/ca.pem" --cert "$tmp/pki/wrong-san/agents/{n}.pem" \
    --key "$tmp/pki/wrong-san/agents/{n}.key" --quiet --stats-json "$tmp/wss-san.json" \
    >"$tmp/wss-san.out" 2>&1 &
bad_fleet=$!
fl_track "$bad_fleet"
sleep 4
tail -n 1 "$tmp/wss-san.json" >"$tmp/out" 2>/dev/null
check wss-wrong-san-refused jq_ "$tmp/out" "d['connected'] == 0 and d['notifs_acked'] == 0"
check wss-wrong-san-said grep -q "os::012345-SIM000004: the server refused the session (HTTP 403)" "$tmp/wss-san.out"
fl_stop "$bad_fleet" 20
fl_untrack "$bad_fleet"
p2p_end wss

# ---- UNIX domain sockets, plain and TLS -----------------------------------------------
p2p_case uds 3 --listen "unix:$tmp/ctl.sock" --watch -- --controller "unix:$tmp/ctl.sock"
check_answers uds GW00000002
check uds-sessions [ "$(grep -cE '^os::012345-SIM00000[1-3] +connected +1\.4 .* up$' "$tmp/out")" -eq 3 ]
check uds-connect-records grep -q "connected, UNIX domain socket" "$tmp/uds.out"
p2p_end uds
p2p_case uds-tls 3 --listen "unix:$tmp/ctl-tls.sock" --uds-tls --certs "$tmp/pki" -- \
    --controller "unix:$tmp/ctl-tls.sock" --uds-tls --certs "$tmp/pki"
check_answers uds-tls GW00000002
# Agents whose certificates another CA signed get no session.
"$U" agents --count 2 --first-index 4 --controller "unix:$tmp/ctl-tls.sock" --uds-tls \
    --certs "$tmp/pki-other" --quiet --stats-json "$tmp/uds-bad.json" >"$tmp/uds-bad.out" 2>&1 &
bad_fleet=$!
fl_track "$bad_fleet"
sleep 4
tail -n 1 "$tmp/uds-bad.json" >"$tmp/out" 2>/dev/null
check uds-tls-untrusted-refused jq_ "$tmp/out" "d['connected'] == 0 and d['notifs_acked'] == 0"
check uds-tls-untrusted-said grep -q "os::012345-SIM000004: .*certificate" "$tmp/uds-bad.out"
fl_stop "$bad_fleet" 20
fl_untrack "$bad_fleet"
"$U" agents --count 1 --first-index 4 --controller "unix:$tmp/ctl-tls.sock" --uds-tls \
    --ca "$tmp/pki/ca.pem" --cert "$tmp/pki/wrong-san/agents/{n}.pem" \
    --key "$tmp/pki/wrong-san/agents/{n}.key" --quiet --stats-json "$tmp/uds-san.json" \
    >"$tmp/uds-san.out" 2>&1 &
bad_fleet=$!
fl_track "$bad_fleet"
sleep 4
tail -n 1 "$tmp/uds-san.json" >"$tmp/out" 2>/dev/null
check uds-tls-wrong-san-refused jq_ "$tmp/out" "d['connected'] == 0 and d['notifs_acked'] == 0"
check uds-tls-wrong-san-said grep -q "is not authenticated by the certificate (it holds os::012345-SIM000005)" "$tmp/uds-san.out"
fl_stop "$bad_fleet" 20
fl_untrack "$bad_fleet"
p2p_end uds-tls

# ---- CoAP (legacy), NoSec and DTLS ------------------------------------------------------
CP=$(fl_free_port)
AP=$(fl_free_port)
p2p_case coap 3 --listen "coap://127.0.0.1:$CP" -- --controller "coap://127.0.0.1:$CP" \
    --listen "coap://127.0.0.1:$AP"
check_answers coap GW00000002 1.0,1.1,1.2
check coap-version-agreed [ "$(grep -cE '^os::012345-SIM00000[1-3] +seen +1\.2 ' "$tmp/out")" -eq 3 ]
p2p_end coap
CP=$(fl_free_port)
AP=$(fl_free_port)
# coaps agents share their worker's DTLS server: one (wildcard) certificate.
"$U" certs --out "$tmp/pki" --shared-agent >"$tmp/certs.out" 2>&1 ||
    fl_fail_setup "uspsim certs --shared-agent failed: $(cat "$tmp/certs.out")"
p2p_case coaps 2 --listen "coaps://127.0.0.1:$CP" --certs "$tmp/pki" -- \
    --controller "coaps://127.0.0.1:$CP" --listen "coaps://127.0.0.1:$AP" --certs "$tmp/pki"
check_answers coaps GW00000002 1.0,1.1,1.2
p2p_end coaps

# ---- MQTT over TLS ---------------------------------------------------------------------
MP=$(fl_free_port)
cat >"$tmp/mqtts.conf" <<END_CONF
user $(id -un)
listener $MP 127.0.0.1
cafile $tmp/pki/ca.pem
certfile $tmp/pki/broker.pem
keyfile $tmp/pki/broker.key
require_certificate true
allow_anonymous true
persistence false
log_dest file $tmp/mqtts.log
END_CONF
"$fl_mosq" -c "$tmp/mqtts.conf" >"$tmp/mqtts.out" 2>&1 &
mqtts_pid=$!
fl_track "$mqtts_pid"
fl_wait_port "$MP" || fl_fail_setup "mosquitto (TLS) did not start: $(cat "$tmp/mqtts.out")"
"$U" agents --count 3 --broker "mqtts://127.0.0.1:$MP" --certs "$tmp/pki" --quiet \
    --stats-json "$tmp/mqtts.json" >"$tmp/mqtts-fleet.out" 2>&1 &
mq_fleet=$!
fl_track "$mq_fleet"
fleet_has "$tmp/mqtts.json" "d['connected'] == 3" 20
run_reqs "$U" controller --broker "mqtts://127.0.0.1:$MP" --certs "$tmp/pki" \
    --to os::012345-SIM000002 --timeout 5
check mqtts-exit rc_is 0
check_answers mqtts GW00000002
run "$U" controller --broker "mqtts://127.0.0.1:$MP" --certs "$tmp/pki-other" --connect-timeout 3 \
    --to os::012345-SIM000002 -e 'get Device.DeviceInfo.SerialNumber'
check mqtts-untrusted-refused eval '[ "$rc" -eq 1 ] && grep -qF "TLS handshake with 127.0.0.1 port $MP failed" "$tmp/err"'
fl_stop "$mq_fleet" 20
fl_untrack "$mq_fleet"
fl_kill_pid "$mqtts_pid"
fl_untrack "$mqtts_pid"

# ---- usage errors --------------------------------------------------------------------
usage() { # NAME TEXT ARGS...
    _n=$1
    _t=$2
    shift 2
    run "$U" "$@"
    check "usage-$_n" eval '[ "$rc" -eq 2 ] && grep -qF -- "$_t" "$tmp/err"'
}
usage mtp-mismatch "--broker 'mqtt://127.0.0.1:1' is a mqtt URL, but --mtp is ws" \
    agents --mtp ws --broker mqtt://127.0.0.1:1
usage mixed "--controller 'ws://127.0.0.1:1/' is a ws URL, but the other URLs are stomp" \
    agents --broker stomp://127.0.0.1:1 --controller ws://127.0.0.1:1/
usage p2p-needs-url "ws needs either --listen URL (accept) or --controller URL (connect)" \
    agents --mtp ws
usage same-listen "gives every agent the same URL" \
    agents --count 2 --listen ws://127.0.0.1:9/usp
usage stomp-no-broker "stomp needs --broker" controller --mtp stomp
usage brokered-listen "--listen 'ws://127.0.0.1:9/' is a ws URL, but --mtp is mqtt" \
    controller --mtp mqtt --listen ws://127.0.0.1:9/
usage brokered-agent "mqtt reaches its peers through a broker: use --broker, not --agent" \
    controller --agent mqtt://127.0.0.1:9
usage tls-missing "TLS needs the CA, a certificate and its key" \
    controller --listen wss://127.0.0.1:9/usp
usage tls-no-file "--ca $tmp/none.pem: no such file" \
    agents --controller wss://127.0.0.1:9/usp --ca "$tmp/none.pem" --cert x --key y
usage tls-unused "TLS files were given but no URL uses TLS" \
    agents --controller ws://127.0.0.1:9/usp --certs "$tmp"
usage bad-scheme "option --agent: 'http://x/': unknown scheme \"http\"" controller --agent http://x/
fl_done

#!/bin/sh
# shellcheck disable=SC2086 # option strings are meant to split
# E2E session context and segmentation (R-E2E.*) between `uspsim agents`
# and `uspsim controller`, over a real mosquitto and over WebSocket:
#   segment    200-byte Records: a GetSupportedDM of the whole model (hundreds
#              of segments) arrives intact, identical to the answer without
#              a session; the agents count the session and the segmenting.
#   faults     the agent's 3rd segment dropped and its 6th sent after the 7th
#              (--e2e-fault): the answer is still intact, recovered by a
#              retransmit_id request (counted by the agent).
#   refusal    an agent with SessionMode Forbid answers Disconnect 7106; the
#              controller that requires a session fails at once, saying so.
#   model      the agent's data model shows its SessionMode.
#   ws         the same large answer over WebSocket (the controller accepts,
#              the agents connect) in a session.
# Usage: sh tests/integration/test-e2e.sh BUILD
# Prints one line per check; "e2e: N passed, M failed"; non-zero on failure.
set -u
fl_name=e2e
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fl_init "${1:-build}"
U=$fl_uspsim
tmp=$fl_tmp

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
            [ -s "$tmp/$_f" ] && sed "s/^/    $_f: /" "$tmp/$_f" | tail -n 8
        done
    fi
}
rc_is() { [ "$rc" -eq "$1" ]; }
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
# stat_ge FILE KEY N: the fleet's last counters line has KEY >= N.
stat_ge() {
    _i=0
    while [ $_i -lt 40 ]; do
        _v=$(fl_stat "$1" "$2")
        [ -n "$_v" ] && [ "$_v" -ge "$3" ] && return 0
        sleep 0.1
        _i=$((_i + 1))
    done
    echo "$2 = ${_v:-none}, expected >= $3" >"$tmp/out"
    return 1
}

P=$(fl_free_port)
fl_broker_start "$P"
B=mqtt://127.0.0.1:$P
E2E_A="--e2e Allow,MaxRetransmitTries=3 --e2e-max-record 200"
E2E_C="--e2e Require,MaxRetransmitTries=3 --e2e-max-record 200"

# ---- segmentation --------------------------------------------------------------
"$U" agents --count 2 --broker "$B" $E2E_A --quiet --stats-json "$tmp/seg.json" \
    >"$tmp/seg-fleet.out" 2>&1 &
seg_fleet=$!
fl_track "$seg_fleet"
fl_wait_for "$tmp/seg.json" '"connected":2' 20
A2=os::012345-SIM000002
run "$U" controller --broker "$B" --to $A2 -e 'gsdm Device.'
cp "$tmp/out" "$tmp/plain-gsdm.out"
check plain-gsdm rc_is 0
lines=$(wc -l <"$tmp/plain-gsdm.out")
fl_say "GetSupportedDM of the model: $lines lines"
check plain-gsdm-large [ "$lines" -ge 300 ]
run "$U" controller --broker "$B" --to $A2 $E2E_C -e 'gsdm Device.'
check segmented-exit rc_is 0
check segmented-intact cmp -s "$tmp/out" "$tmp/plain-gsdm.out"
check segmented-session stat_ge "$tmp/seg.json" e2e_sessions 1
check segmented-counted stat_ge "$tmp/seg.json" e2e_segmented 1
run "$U" controller --broker "$B" --to $A2 $E2E_C -e 'get Device.LocalAgent.Controller.1.E2ESession.SessionMode'
check model-session-mode grep -qx 'Device.LocalAgent.Controller.1.E2ESession.SessionMode = Allow' "$tmp/out"
run "$U" controller --broker "$B" --to $A2 $E2E_C -e 'set Device.DeviceInfo.FriendlyName=in-a-session' \
    -e 'get Device.DeviceInfo.FriendlyName'
check session-set-get grep -qx 'Device.DeviceInfo.FriendlyName = in-a-session' "$tmp/out"
fl_stop "$seg_fleet" 20
rc=$?
fl_untrack "$seg_fleet"
check segment-fleet-clean-stop rc_is 0

# ---- dropped and reordered segments ------------------------------------------------
"$U" agents --count 1 --broker "$B" $E2E_A --e2e-fault drop=3,swap=6 --quiet \
    --stats-json "$tmp/fault.json" >"$tmp/fault-fleet.out" 2>&1 &
fault_fleet=$!
fl_track "$fault_fleet"
fl_wait_for "$tmp/fault.json" '"connected":1' 20
A1=os::012345-SIM000001
run "$U" controller --broker "$B" --to $A1 -e 'gsdm Device.DeviceInfo.'
cp "$tmp/out" "$tmp/plain-di.out"
run "$U" controller --broker "$B" --to $A1 $E2E_C -e 'gsdm Device.DeviceInfo.'
check faults-exit rc_is 0
check faults-intact cmp -s "$tmp/out" "$tmp/plain-di.out"
check faults-retransmitted stat_ge "$tmp/fault.json" e2e_retransmitted 1
fl_stop "$fault_fleet" 20
fl_untrack "$fault_fleet"

# ---- refusal ---------------------------------------------------------------------------
"$U" agents --count 1 --broker "$B" --quiet --stats-json "$tmp/forbid.json" \
    >"$tmp/forbid-fleet.out" 2>&1 &
forbid_fleet=$!
fl_track "$forbid_fleet"
fl_wait_for "$tmp/forbid.json" '"connected":1' 20
t0=$(fl_now_ms)
run "$U" controller --broker "$B" --to $A1 --e2e Require --timeout 8 -e 'get Device.DeviceInfo.SerialNumber'
t1=$(fl_now_ms)
check refusal-exit rc_is 1
check refusal-message grep -qF "the agent refused the E2E session: Disconnect 7106" "$tmp/err"
check refusal-at-once [ $((t1 - t0)) -lt 5000 ]
run "$U" agents --e2e Sometimes
check usage-bad-mode eval '[ "$rc" -eq 2 ] && grep -qF -- "--e2e '"'"'Sometimes'"'"'" "$tmp/err"'
run "$U" agents --e2e Allow,MaxRetransmitTries=99
check usage-bad-param eval '[ "$rc" -eq 2 ] && grep -qF "MaxRetransmitTries" "$tmp/err"'
run "$U" agents --e2e-fault drop=2
check usage-fault-needs-e2e eval '[ "$rc" -eq 2 ] && grep -qF "needs --e2e Allow or Require" "$tmp/err"'
fl_stop "$forbid_fleet" 20
fl_untrack "$forbid_fleet"

# ---- over WebSocket ------------------------------------------------------------------
WP=$(fl_free_port)
WS=ws://127.0.0.1:$WP/usp
rm -f "$tmp/ws.in"
mkfifo "$tmp/ws.in"
"$U" controller --listen "$WS" $E2E_C --timeout 10 <"$tmp/ws.in" >"$tmp/ws.out" 2>"$tmp/ws.err" &
ws_ctl=$!
fl_track "$ws_ctl"
exec 7>"$tmp/ws.in"
fl_wait_port "$WP" || fl_fail_setup "the controller did not listen at $WS"
"$U" agents --count 2 --controller "$WS" $E2E_A --quiet --stats-json "$tmp/ws.json" \
    >"$tmp/ws-fleet.out" 2>&1 &
ws_fleet=$!
fl_track "$ws_fleet"
fl_wait_for "$tmp/ws.json" '"connected":2' 20
printf 'use %s\ngsdm Device.\n' "$A2" >&7
exec 7>&-
i=0
while kill -0 "$ws_ctl" 2>/dev/null && [ $i -lt 200 ]; do
    sleep 0.1
    i=$((i + 1))
done
fl_kill_pid "$ws_ctl"
fl_untrack "$ws_ctl"
grep -v '^requests go to ' "$tmp/ws.out" >"$tmp/out"
cp "$tmp/ws.err" "$tmp/err"
check ws-segmented-intact cmp -s "$tmp/out" "$tmp/plain-gsdm.out"
check ws-segmented-counted stat_ge "$tmp/ws.json" e2e_segmented 1
fl_stop "$ws_fleet" 20
fl_untrack "$ws_fleet"
fl_done

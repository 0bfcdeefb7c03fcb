#!/bin/sh
# The agent fleet (`uspsim agents`) against a real mosquitto, driven by
# tests/integration/fleet_check.c, a minimal USP Controller on libusp. Once
# over MQTT 5 and once over MQTT 3.1.1 (fleet and controller alike), with
# 1,000 agents (FLEET_AGENTS overrides):
#   boot        every agent sends its MQTTConnectRecord and a Boot! that
#               reaches the controller: distinct from_ids = 1,000; each
#               Boot! is checked (Device.Boot!, subscription boot-1,
#               send_resp, Cause, ParameterMap, reply-to = the agent's own
#               topic) and acknowledged with a NotifyResp.
#   get-all     every agent answers a Get with its own serial number and
#               Endpoint ID.
#   notify-all  on every agent: Add of four subscriptions (the agent sets
#               Recipient to the requesting controller), Set ->
#               ValueChange, Add -> ObjectCreation, Delete ->
#               ObjectDeletion, Operate Device.ScheduleTimer() (async) ->
#               OperationComplete; all with NotifRetry, all acknowledged.
#   stats       the fleet's --stats-json: all connected, nothing pending.
# Then the fleet stops cleanly (SIGINT, exit 0) and its summary adds up.
# Usage: sh tests/integration/test-fleet.sh BUILD
# Prints what it checked; "fleet: N passed, M failed"; non-zero on failure.
set -u
# shellcheck disable=SC2034 # fl_name is used by lib.sh
fl_name="fleet"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fl_init "${1:-build}"
fl_build_driver
n=${FLEET_AGENTS:-1000}

run_version() {
    v=$1
    port=$(fl_free_port)
    fl_broker_start "$port"
    log="$fl_tmp/driver-$v.log"
    stats="$fl_tmp/stats-$v.json"
    flog="$fl_tmp/fleet-$v.log"
    fl_say "MQTT $v: $n agents, mosquitto on 127.0.0.1:$port (pid $fl_broker_pid)"
    "$fl_driver" --port "$port" --mqtt "$v" --count "$n" --window 500 --timeout 45 --stats "$stats" \
        boot get-all notify-all "stats:connected=$n,reconnecting=0,notifs_pending=0" \
        >"$log" 2>&1 &
    drv=$!
    fl_track "$drv"
    fl_wait_for "$log" READY 15 || {
        sed 's/^/    /' "$log"
        fl_fail_setup "MQTT $v: the driver did not connect"
    }
    t0=$(date +%s)
    "$fl_uspsim" agents --count "$n" --broker "mqtt://127.0.0.1:$port" --mqtt-version "$v" \
        --quiet --stats-json "$stats" >"$flog" 2>&1 &
    fleet=$!
    fl_track "$fleet"
    wait "$drv"
    rc=$?
    fl_check "v$v-controller-checks ($(grep -c '^ok' "$log") ok, $(grep -c '^FAIL' "$log") failed, $(($(date +%s) - t0)) s)" \
        [ "$rc" -eq 0 ]
    fl_show_log "$log"
    fl_check "v$v-fleet-still-running" kill -0 "$fleet"
    fl_stop "$fleet" 30
    frc=$?
    fl_check "v$v-fleet-clean-exit (status $frc)" [ "$frc" -eq 0 ]
    sed -n '/summary/,$p' "$flog" | sed 's/^/    /'
    fl_check "v$v-summary-all-connected" grep -Eq "connected at least once +$n\$" "$flog"
    fl_check "v$v-summary-no-errors" grep -Eq "errors +0 Error replies, 0 records dropped" "$flog"
    fl_check "v$v-summary-nothing-unacknowledged" grep -Eq "notifications unacknowledged +0\$" "$flog"
    fl_check "v$v-no-worker-failure" sh -c "! grep -q 'worker .* ended with status' '$flog'"
    fl_broker_stop "$fl_broker_pid"
}

run_version 5
run_version 3.1.1
fl_done

#!/bin/sh
# The agent fleet when its broker dies: mosquitto is killed (SIGKILL) in the
# middle of a run and started again on the same port 2.5 s later. MQTT 5
# and MQTT 3.1.1 run side by side, each with 1,000 agents (FLEET_AGENTS
# overrides), its own broker and its own controller
# (tests/integration/fleet_check.c), which acknowledges nothing before the
# outage:
#   boot:noack  every agent's Boot! arrives and is left unacknowledged, so
#               the agents keep retrying it (NotifRetry);
#   arm:3       per agent, an OperationComplete subscription with
#               NotifRetry=true and Device.ScheduleTimer(DelaySeconds=3):
#               the timers complete while the broker is down, so the first
#               transmission of every OperationComplete fails;
#   outage      the script kills the broker and starts it again;
#   reconnect   every agent is connected again (--stats-json) within its
#               back-off window: not before ConnectRetryTime, not after
#               ConnectRetryTime x ConnectRetryIntervalMultiplier (values
#               read from the agents' Device.MQTT.Client.1; the profile
#               gives 5 s and 2000), each lost its connection exactly once;
#   collect     no notification is lost: every agent sends a new
#               MQTTConnectRecord first, then retransmits its Boot! (same
#               msg_id) and the OperationComplete generated during the
#               outage; the controller acknowledges them now;
#   stats       the agents' pending notifications drop to 0.
# Then each fleet stops cleanly and its summary shows the lost connections.
# Usage: sh tests/integration/test-fleet-broker-restart.sh BUILD
# Prints what it checked; "fleet-restart: N passed, M failed"; non-zero on
# failure.
# The per-version variables (drv_v5, state_v311, ...) are set through eval.
# shellcheck disable=SC2154
set -u
# shellcheck disable=SC2034 # fl_name is used by lib.sh
fl_name="fleet-restart"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fl_init "${1:-build}"
fl_build_driver
n=${FLEET_AGENTS:-1000}
down_ms=2500

# start TAG VERSION: broker, controller, fleet for one MQTT version.
start() {
    tag=$1
    v=$2
    port=$(fl_free_port)
    fl_broker_start "$port" "$tag"
    eval "port_$tag=$port broker_$tag=$fl_broker_pid state_$tag=running"
    log="$fl_tmp/driver-$tag.log"
    "$fl_driver" --port "$port" --mqtt "$v" --count "$n" --window 500 --timeout 60 \
        --stats "$fl_tmp/stats-$tag.json" boot:noack arm:3 outage reconnect collect \
        "stats:connected=$n,reconnecting=0,notifs_pending=0" >"$log" 2>&1 &
    eval "drv_$tag=$!"
    fl_track "$!"
    fl_wait_for "$log" READY 15 || {
        sed 's/^/    /' "$log"
        fl_fail_setup "MQTT $v: the controller did not connect"
    }
    "$fl_uspsim" agents --count "$n" --broker "mqtt://127.0.0.1:$port" --mqtt-version "$v" \
        --quiet --stats-json "$fl_tmp/stats-$tag.json" >"$fl_tmp/fleet-$tag.log" 2>&1 &
    eval "fleet_$tag=$!"
    fl_track "$!"
    fl_say "MQTT $v: $n agents, mosquitto on 127.0.0.1:$port"
}

# step TAG: kills the broker when the controller asks, restarts it later.
step() {
    tag=$1
    eval "st=\$state_$tag port=\$port_$tag broker=\$broker_$tag"
    case $st in
    running)
        if grep -q KILL-BROKER-NOW "$fl_tmp/driver-$tag.log"; then
            fl_broker_kill "$broker"
            eval "state_$tag=down killed_$tag=$(fl_now_ms)"
            fl_say "$tag: broker killed"
        fi
        ;;
    down)
        eval "killed=\$killed_$tag"
        if [ $(($(fl_now_ms) - killed)) -ge $down_ms ]; then
            fl_broker_start "$port" "$tag"
            eval "broker_$tag=$fl_broker_pid state_$tag=up"
            fl_say "$tag: broker started again on port $port after $(($(fl_now_ms) - killed)) ms"
        fi
        ;;
    esac
}

start v5 5
start v311 3.1.1
t0=$(fl_now_ms)
# Both runs side by side, until both controllers are done (at most 100 s).
while kill -0 "$drv_v5" 2>/dev/null || kill -0 "$drv_v311" 2>/dev/null; do
    step v5
    step v311
    [ $(($(fl_now_ms) - t0)) -gt 100000 ] && break
    sleep 0.05
done

for tag in v5 v311; do
    eval "drv=\$drv_$tag fleet=\$fleet_$tag st=\$state_$tag broker=\$broker_$tag"
    log="$fl_tmp/driver-$tag.log"
    if kill -0 "$drv" 2>/dev/null; then
        rc=124
    else
        wait "$drv"
        rc=$?
    fi
    fl_check "$tag-broker-killed-and-restarted" [ "$st" = up ]
    fl_check "$tag-controller-checks ($(grep -c '^ok' "$log") ok, $(grep -c '^FAIL' "$log") failed)" \
        [ "$rc" -eq 0 ]
    fl_show_log "$log"
    fl_check "$tag-fleet-still-running" kill -0 "$fleet"
    fl_stop "$fleet" 30
    frc=$?
    flog="$fl_tmp/fleet-$tag.log"
    fl_check "$tag-fleet-clean-exit (status $frc)" [ "$frc" -eq 0 ]
    sed -n '/summary/,$p' "$flog" | sed 's/^/    /'
    fl_check "$tag-summary-each-connection-lost-once" grep -Eq "connections lost +$n\$" "$flog"
    fl_check "$tag-summary-nothing-unacknowledged" grep -Eq "notifications unacknowledged +0\$" "$flog"
    fl_check "$tag-summary-retries-sent" grep -Eq "notifications sent .*, [1-9][0-9]* retries" "$flog"
    fl_broker_stop "$broker"
done
fl_say "both runs took $((($(fl_now_ms) - t0) / 1000)) s"
fl_done

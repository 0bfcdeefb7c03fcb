#!/bin/sh
# Bad input published to an agent's topic, against a real mosquitto, over
# MQTT 5 and MQTT 3.1.1. tests/integration/fleet_check.c sends each case to
# the first of three agents, then a probe Get; the case passes when what
# came back before the probe's answer is what the specification asks (an
# Error with the right code and msg_id under R-MTP.5, a DisconnectRecord, or
# nothing) and the agent answered the probe:
#   random bytes, a truncated Record, to_id of another agent (R-E2E.1),
#   empty from_id, no record_type (R-ENC.4), version 9.9 from an invalid
#   from_id, no msg_id, a payload that is no Msg    -> dropped silently
#   version 9.9, unknown payload_security, unknown msg_type (R-ENC.2), a
#   Request without req_type (R-ENC.5)               -> Error 7104 / 7004
#   a session_context Record                        -> Disconnect 7106
#   a Notify request to the agent                   -> Error 7001
#   a NotifyResp for no Notify                      -> ignored
#   Content Type text/plain (MQTT 5), no reply-to, an empty PUBLISH
#                                                   -> dropped
#   a 1 MiB Get (32,769 paths): within the MTP's max_record (4 MiB) and the
#   broker's limit (none set)                        -> answered in full
#   a 5 MiB Record, over max_record                  -> dropped by the MTP
# Then the fleet's counters (--stats-json dropped, errors_sent) must equal
# what the cases predict, the fleet must still run, and stop cleanly.
# Usage: sh tests/integration/test-fleet-badinput.sh BUILD
# Prints what it checked; "fleet-badinput: N passed, M failed"; non-zero on
# failure.
set -u
# shellcheck disable=SC2034 # fl_name is used by lib.sh
fl_name="fleet-badinput"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fl_init "${1:-build}"
fl_build_driver
n=3

run_version() {
    v=$1
    port=$(fl_free_port)
    fl_broker_start "$port" "$v"
    log="$fl_tmp/driver-$v.log"
    stats="$fl_tmp/stats-$v.json"
    flog="$fl_tmp/fleet-$v.log"
    fl_say "MQTT $v: $n agents, mosquitto on 127.0.0.1:$port"
    "$fl_driver" --port "$port" --mqtt "$v" --count "$n" --timeout 40 --stats "$stats" \
        boot badinput get-all "stats:connected=$n,reconnecting=0,notifs_pending=0" \
        >"$log" 2>&1 &
    drv=$!
    fl_track "$drv"
    fl_wait_for "$log" READY 15 || {
        sed 's/^/    /' "$log"
        fl_fail_setup "MQTT $v: the driver did not connect"
    }
    t0=$(fl_now_ms)
    "$fl_uspsim" agents --count "$n" --broker "mqtt://127.0.0.1:$port" --mqtt-version "$v" \
        --quiet --stats-json "$stats" >"$flog" 2>&1 &
    fleet=$!
    fl_track "$fleet"
    wait "$drv"
    rc=$?
    fl_check "v$v-cases ($(grep -c '^ok' "$log") ok, $(grep -c '^FAIL' "$log") failed, $((($(fl_now_ms) - t0) / 1000)) s)" \
        [ "$rc" -eq 0 ]
    fl_show_log "$log"
    fl_check "v$v-fleet-still-running" kill -0 "$fleet"
    fl_stop "$fleet" 30
    frc=$?
    fl_check "v$v-fleet-clean-exit (status $frc)" [ "$frc" -eq 0 ]
    sed -n '/summary/,$p' "$flog" | sed 's/^/    /'
    fl_check "v$v-no-connection-lost" grep -Eq "connections lost +0\$" "$flog"
    fl_broker_stop "$fl_broker_pid"
}

run_version 5
run_version 3.1.1
fl_done

#!/bin/sh
# An agent's MTP settings live in its data model: a controller that Sets
# Device.MQTT.Client.1.BrokerPort moves the agent to another broker (it
# reconnects there without a reboot: an MQTTConnectRecord, no Boot!), and a
# Get reads back what the command line filled in (broker, topics, keepalive).
# Real mosquittos, a real fleet and the uspsim controller.
fl_name=mtp-settings
fl_py=/usr/bin/python3
[ -x "$fl_py" ] || fl_py=$(command -v python3)
. "$(dirname "$0")/lib.sh"
fl_init "${1:-build}"

p1=$(fl_free_port)
fl_broker_start "$p1" one
p2=$(fl_free_port)
fl_broker_start "$p2" two
EID=os::012345-SIM000001

"$fl_uspsim" agents --count 2 --broker "mqtt://127.0.0.1:$p1" --keepalive 30 --quiet \
    --stats-json "$fl_tmp/fleet.json" >"$fl_tmp/fleet.out" 2>&1 &
fleet=$!
fl_track "$fleet"

# What reaches the controller topic on the second broker: connect records
# and notifications, payload in hex.
mosquitto_sub -h 127.0.0.1 -p "$p2" -V mqttv5 -t 'usp/controller/#' -F '%x' >"$fl_tmp/two.txt" 2>&1 &
fl_track $!

ctl1() { p=$1; shift; "$fl_uspsim" controller --broker "mqtt://127.0.0.1:$p" --to "$EID" --timeout 5 --quiet "$@"; }

fl_wait_for "$fl_tmp/fleet.json" '"connected":2,' 20 || fl_fail_setup "the fleet did not connect: $(cat "$fl_tmp/fleet.out")"
get_out=$(ctl1 "$p1" -e 'get Device.MQTT.Client.1.BrokerPort Device.MQTT.Client.1.KeepAliveTime Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured Device.LocalAgent.Controller.1.EndpointID' 2>&1)
fl_check "Get reads the broker port the command line gave" sh -c "printf '%s\n' \"\$1\" | grep -q 'BrokerPort = $p1'" _ "$get_out"
fl_check "Get reads the keepalive the command line gave" sh -c "printf '%s\n' \"\$1\" | grep -q 'KeepAliveTime = 30'" _ "$get_out"
fl_check "Get reads the agent topic" sh -c "printf '%s\n' \"\$1\" | grep -q 'ResponseTopicConfigured = usp/agent/$EID'" _ "$get_out"
fl_check "Get reads the controller" sh -c "printf '%s\n' \"\$1\" | grep -q 'EndpointID = self::uspsim-controller'" _ "$get_out"

fl_check "the Set of BrokerPort succeeds" ctl1 "$p1" -e "set Device.MQTT.Client.1.BrokerPort=$p2"
# The MQTTConnectRecord (it carries the agent's topic) arrives on broker two.
topic_hex=$("$fl_py" -c "import sys; print(sys.argv[1].encode().hex())" "usp/agent/$EID")
moved=1
for _ in $(seq 1 100); do
    if grep -q "$topic_hex" "$fl_tmp/two.txt" 2>/dev/null; then moved=0; break; fi
    sleep 0.1
done
fl_check "the agent reconnects to the broker a controller set" [ "$moved" -eq 0 ]
fl_check "no Boot! on that reconnect (not a reboot)" sh -c "! grep -q 426f6f7421 '$fl_tmp/two.txt'"
fl_check "the agent answers on the new broker" ctl1 "$p2" -e 'get Device.DeviceInfo.SerialNumber'
fl_check "the other agent stays on the first broker" \
    "$fl_uspsim" controller --broker "mqtt://127.0.0.1:$p1" --to os::012345-SIM000002 --timeout 5 --quiet -e 'get Device.DeviceInfo.SerialNumber'
fl_stop "$fleet" >/dev/null
fl_check "the fleet exits cleanly" [ "$?" -eq 0 ]
fl_done

#!/bin/sh
# shellcheck disable=SC2086 # $C, $A1 and $U hold a command and options meant to split
# `uspsim controller` against a real mosquitto (started here on 127.0.0.1 on
# a free port, stopped by PID) and real `uspsim agents` fleets:
#   notify     a controller listening with `watch` while 5 agents boot: it
#              prints their connections and Boot!s, lists them with their
#              agreed version; the fleet's counters show every Boot!
#              acknowledged (notifs_acked = boots_sent) and no retry.
#   exec       every request kind with -e (get, set, add, instances, delete,
#              operate, gsdm, gsp) and its readable output; --json output as
#              `uspsim decode` prints it, in the agreed version; MQTT 3.1.1,
#              and a clear failure when the MQTT versions differ.
#   version    a fake agent speaking 1.0-1.2 (mosquitto_sub/pub and a few lines
#              of protobuf): GetSupportedProtocol comes first in a 1.0
#              Record, the Get that follows in 1.2, the highest in common.
#   errors     an Error response (required Set of a read-only parameter, Add
#              to a non-table) and a timeout (an agent nobody serves) give
#              exit 1 and a clear message; no broker gives 1; bad usage 2.
#   script     the shell reading requests from a pipe: every kind, `use`,
#              `agents`, a failing line that does not stop the script but
#              makes the exit status 1.
#   load       1,000 agents: the rate is held, every request answered,
#              latencies reported; a glob finds agents from their
#              MQTTConnectRecords; the fleet killed mid-run: timeouts are
#              reported and the run ends on time with exit 1.
# Usage: sh tests/integration/test-controller.sh BUILD
# Prints one line per check; "controller: N passed, M failed"; non-zero on failure.
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
U=$build/uspsim
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
passed=0
failed=0
say() { echo "controller: $*"; }
fail_setup() {
    say "$*"
    say "0 passed, 1 failed"
    exit 1
}
[ -x "$U" ] || fail_setup "$U is missing: build it first (make BUILD=$build)"
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$mosq" ] || fail_setup "mosquitto is missing (Debian: mosquitto)"

tmp=$(mktemp -d) || fail_setup "mktemp failed"
broker_pid=""
fleet_pid=""
bg_pid=""
stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}
cleanup() {
    stop_pid "$bg_pid"
    stop_pid "$fleet_pid"
    stop_pid "$broker_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

check() { # check NAME COMMAND...: passes when COMMAND succeeds
    name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        say "PASS $name"
    else
        failed=$((failed + 1))
        say "FAIL $name"
        for f in out err; do
            [ -s "$tmp/$f" ] && sed "s/^/    $f: /" "$tmp/$f" | tail -n 15
        done
    fi
}
has() { grep -qF -- "$1" "$tmp/${2:-out}"; }
hasnt() { ! grep -qF -- "$1" "$tmp/${2:-out}"; }
rc_is() { [ "$rc" -eq "$1" ]; }

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    "$PY" - "$1" <<'EOF'
import socket, sys, time
end = time.time() + 10
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}
# jq_ FILE EXPR: a Python expression over the JSON object `d` in FILE.
jq_() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("bad JSON: %s" % e, file=sys.stderr)
    sys.exit(1)
r = eval(sys.argv[2])
if isinstance(r, bool):
    sys.exit(0 if r else 1)
print(r)
EOF
}
# last_stats FILE: the fleet's last counters line, as a file of one object.
last_stats() {
    tail -n 1 "$1" >"$tmp/stats.json"
}
# wait_fleet FILE N: until the fleet's counters say N agents connected.
wait_fleet() {
    i=0
    while [ $i -lt 300 ]; do
        if [ -s "$1" ]; then
            last_stats "$1"
            jq_ "$tmp/stats.json" "d['connected'] >= $2" 2>/dev/null && return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

port=$(free_port)
cat >"$tmp/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
max_queued_messages 10000
log_dest none
EOF
"$mosq" -c "$tmp/mosquitto.conf" >"$tmp/broker.out" 2>&1 &
broker_pid=$!
wait_port "$port" || fail_setup "mosquitto did not accept on port $port: $(cat "$tmp/broker.out")"
URL=mqtt://127.0.0.1:$port
say "mosquitto on $URL (pid $broker_pid)"
C="$U controller --broker $URL"

# ---- notifications: the controller listens while 5 agents boot ----
(sleep 6; echo agents) | $C --watch >"$tmp/notify.out" 2>"$tmp/notify.err" &
bg_pid=$!
sleep 1.5 # the controller is up and subscribed well before the agents boot
"$U" agents --count 5 --broker "$URL" --quiet --stats-json "$tmp/fleet5.json" \
    >"$tmp/fleet5.out" 2>&1 &
fleet_pid=$!
wait "$bg_pid"
rc=$?
bg_pid=""
cp "$tmp/notify.out" "$tmp/out"
cp "$tmp/notify.err" "$tmp/err"
check notify-exit rc_is 0
check notify-boots-printed [ "$(grep -c 'event Device.Boot! .*Cause=LocalReboot.*(subscription boot-1)' "$tmp/out")" -eq 5 ]
check notify-connects-printed [ "$(grep -c '\] connected, MQTT 5, topic usp/agent/os::012345-SIM00000' "$tmp/out")" -eq 5 ]
check notify-agents-listed [ "$(grep -cE '^os::012345-SIM00000[1-5] +connected +1\.4 +1 ' "$tmp/out")" -eq 5 ]
check notify-agents-count has "5 agents"
sleep 1.5 # one more stats line from the fleet
last_stats "$tmp/fleet5.json"
cp "$tmp/stats.json" "$tmp/out"
check notify-acked jq_ "$tmp/stats.json" "d['boots_sent'] == 5 and d['notifs_acked'] == d['boots_sent']"
check notify-no-retry jq_ "$tmp/stats.json" "d['notifs_retried'] == 0 and d['notifs_pending'] == 0"

# ---- every request kind with -e ----
A1="--to os::012345-SIM000001"
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
run $C $A1 -e 'get Device.DeviceInfo.'
check exec-get rc_is 0
check exec-get-lines has "Device.DeviceInfo.SerialNumber = GW00000001"
check exec-get-nested has "Device.DeviceInfo.MemoryStatus.Total = "
run $C --to os::012345-SIM000003 -e 'get Device.DeviceInfo.SerialNumber'
check exec-get-other-agent has "Device.DeviceInfo.SerialNumber = GW00000003"
run $C $A1 -e 'set Device.DeviceInfo.FriendlyName=ctl-test' -e 'get Device.DeviceInfo.FriendlyName'
check exec-set rc_is 0
check exec-set-output [ "$(grep -c '^Device.DeviceInfo.FriendlyName = ctl-test$' "$tmp/out")" -eq 2 ]
run $C $A1 -e 'add Device.DNS.Client.Server. DNSServer=192.0.2.53'
check exec-add rc_is 0
check exec-add-created grep -qE '^created Device\.DNS\.Client\.Server\.[0-9]+\.$' "$tmp/out"
inst=$(sed -n 's/^created \(Device\.DNS\.Client\.Server\.[0-9]*\.\)$/\1/p' "$tmp/out")
check exec-add-keys has "${inst}Alias = cpe-"
run $C $A1 -e 'instances Device.DNS.Client.Server.'
check exec-instances rc_is 0
check exec-instances-new has "$inst  DNSServer=192.0.2.53"
run $C $A1 -e "delete $inst" -e 'instances Device.DNS.Client.Server.'
check exec-delete rc_is 0
check exec-delete-output has "deleted $inst"
check exec-delete-gone hasnt "$inst "
run $C $A1 -e 'operate Device.SelfTestDiagnostics()'
check exec-operate rc_is 0
check exec-operate-output grep -qE '^Device\.SelfTestDiagnostics\(\): running as Device\.LocalAgent\.Request\.[0-9]+\.$' "$tmp/out"
run $C $A1 -e 'gsdm --first-level Device.DeviceInfo.'
check exec-gsdm rc_is 0
check exec-gsdm-object has "Device.DeviceInfo.  object read-only"
check exec-gsdm-param has "  Manufacturer  parameter read-only string"
run $C $A1 -e 'gsp'
check exec-gsp rc_is 0
check exec-gsp-output has "USP versions 1.0,1.1,1.2,1.3,1.4"
run $C $A1 --json -e 'get Device.DeviceInfo.ModelName'
check exec-json rc_is 0
check exec-json-record jq_ "$tmp/out" "d['to_id'] == 'self::uspsim-controller' and d['from_id'] == 'os::012345-SIM000001' and d['version'] == '1.4' and 'payload' in d['no_session_context']"
check exec-json-msg jq_ "$tmp/out" "d['no_session_context']['msg']['body']['response']['get_resp']['req_path_results'][0]['resolved_path_results'][0]['result_params']['ModelName'] != ''"
run $C $A1 --json -e 'gsp'
check exec-json-like-decode jq_ "$tmp/out" "d['no_session_context']['msg']['header']['msg_type'] == 'GET_SUPPORTED_PROTO_RESP'"

# ---- errors, timeouts, usage ----
run $C $A1 -e 'set Device.DeviceInfo.Manufacturer:=evil'
check error-set-exit rc_is 1
check error-set-message has "Error 7021 (Required parameter failed)" err
check error-set-output has "error 7021 (Required parameter failed)"
check error-set-param has "  Device.DeviceInfo.Manufacturer: error 7013"
run $C $A1 -e 'add Device.DeviceInfo.'
check error-add-exit rc_is 1
check error-add-message has "Error 7018 (Object is not a table)" err
run $C $A1 -e 'get Device.DeviceInfo.SerialNumber' -e 'add Device.DeviceInfo.' -e 'get Device.DeviceInfo.ModelName'
check error-exec-continues rc_is 1
check error-exec-continues-output has "Device.DeviceInfo.ModelName = "
t0=$(date +%s)
run $C --to os::012345-NOBODY --timeout 1 -e 'get Device.'
t1=$(date +%s)
check timeout-exit rc_is 1
check timeout-message has "get to os::012345-NOBODY: timed out after 1.0 s" err
check timeout-in-time [ $((t1 - t0)) -le 5 ]
dead=$(free_port)
run $U controller --broker "mqtt://127.0.0.1:$dead" $A1 --connect-timeout 3 -e 'get Device.'
check no-broker-exit rc_is 1
check no-broker-message has "cannot connect to mqtt://127.0.0.1:$dead" err
run $C $A1 -e 'frobnicate Device.'
check usage-unknown-request rc_is 2
check usage-unknown-request-message has "unknown request 'frobnicate'" err
run $C -e 'get Device.'
check usage-no-to rc_is 2
check usage-no-to-message has "--to EID is needed" err
run $C --qos 3 $A1 -e 'get Device.'
check usage-qos rc_is 2
run $C --to 'not an eid' -e 'get Device.'
check usage-bad-eid rc_is 2
run $U controller load --broker "$URL" --rate 10 --mix get=1,foo=2
check usage-load-mix rc_is 2
check usage-load-mix-message has "unknown kind 'foo'" err
run $U controller load --broker "$URL"
check usage-load-rate rc_is 2

# ---- version agreement with an agent that speaks 1.0-1.2 only ----
# A fake agent made of mosquitto_sub/mosquitto_pub, `uspsim decode` and a few
# lines of protobuf: it checks that GetSupportedProtocol comes first, in a
# 1.0 Record, answers "1.0,1.1,1.2", then checks the Get comes in 1.2.
cat >"$tmp/old_agent.py" <<'EOF'
import json, subprocess, sys, time
port, uspsim, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
EID = "proto::old-agent"

def varint(n):
    out = b""
    while True:
        b = n & 127
        n >>= 7
        out += bytes([b | (128 if n else 0)])
        if not n:
            return out

def field(num, data):  # length-delimited
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data

def vfield(num, n):  # varint
    return varint(num << 3) + varint(n)

def record(to, msg_id, msg_type, response):
    header = field(1, msg_id) + vfield(2, msg_type)
    msg = field(1, header) + field(2, field(2, response))
    return field(1, "1.0" if msg_type == 18 else "1.2") + field(2, to) + field(3, EID) + \
        field(7, field(2, msg))

sub = subprocess.Popen(["mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port,
                        "-t", "usp/agent/" + EID, "-F", "%R %x", "-C", "2"],
                       stdout=subprocess.PIPE, text=True)
time.sleep(0.7)
print("READY", flush=True)
for n in range(2):
    line = sub.stdout.readline().split()
    if len(line) != 2:
        print("NO-MESSAGE", flush=True)
        sys.exit(1)
    reply, hexrec = line
    dec = subprocess.run([uspsim, "decode", "--hex", "--compact"], input=hexrec, text=True,
                         capture_output=True)
    rec = json.loads(dec.stdout)
    msg = rec["no_session_context"]["msg"]
    req = msg["body"]["request"]
    if n == 0:
        print("FIRST %s %s" % (list(req)[0], rec["version"]), flush=True)
        out = record(rec["from_id"], msg["header"]["msg_id"], 18,
                     field(9, field(1, "1.0,1.1,1.2")))
    else:
        print("SECOND %s %s" % (list(req)[0], rec["version"]), flush=True)
        entry = field(1, "ModelName") + field(2, "Old-1")
        resolved = field(1, "Device.DeviceInfo.") + field(2, entry)
        result = field(1, "Device.DeviceInfo.ModelName") + field(4, resolved)
        out = record(rec["from_id"], msg["header"]["msg_id"], 2, field(1, field(1, result)))
    with open(tmp + "/reply.bin", "wb") as f:
        f.write(out)
    subprocess.run(["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port, "-t", reply,
                    "-f", tmp + "/reply.bin", "-D", "publish", "content-type", "usp.msg"],
                   check=True)
sub.wait()
EOF
if command -v mosquitto_sub >/dev/null && command -v mosquitto_pub >/dev/null; then
    : >"$tmp/old_agent.out"
    "$PY" "$tmp/old_agent.py" "$port" "$U" "$tmp" >"$tmp/old_agent.out" 2>&1 &
    bg_pid=$!
    i=0
    while ! grep -q READY "$tmp/old_agent.out" && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    run $C --to proto::old-agent --timeout 5 -e 'get Device.DeviceInfo.ModelName'
    wait "$bg_pid"
    bg_pid=""
    check version-exit rc_is 0
    check version-output has "Device.DeviceInfo.ModelName = Old-1"
    cp "$tmp/old_agent.out" "$tmp/out"
    check version-gsp-first-in-1.0 has "FIRST get_supported_protocol 1.0"
    check version-agreed-1.2 has "SECOND get 1.2"
else
    check version-mosquitto-clients false
fi

# ---- the shell reading a script from a pipe ----
cat >"$tmp/script" <<'EOF'
# every request kind, one per line
use os::012345-SIM000002
get Device.DeviceInfo.SerialNumber
set Device.DeviceInfo.FriendlyName=script
add Device.DNS.Client.Server. DNSServer=192.0.2.54
instances Device.DNS.Client.Server.
delete Device.DNS.Client.Server.[DNSServer=="192.0.2.54"].
operate Device.SelfTestDiagnostics()
gsdm --first-level Device.DeviceInfo.
gsp
agents
EOF
"$U" controller --broker "$URL" <"$tmp/script" >"$tmp/out" 2>"$tmp/err"
rc=$?
check script-exit rc_is 0
check script-get has "Device.DeviceInfo.SerialNumber = GW00000002"
check script-set has "Device.DeviceInfo.FriendlyName = script"
check script-add grep -qE '^created Device\.DNS\.Client\.Server\.[0-9]+\.$' "$tmp/out"
check script-instances grep -qE '^Device\.DNS\.Client\.Server\.[0-9]+\.  DNSServer=192\.0\.2\.54' "$tmp/out"
check script-delete grep -qE '^deleted Device\.DNS\.Client\.Server\.[0-9]+\.$' "$tmp/out"
check script-operate has "Device.SelfTestDiagnostics(): running as Device.LocalAgent.Request."
check script-gsdm has "Device.DeviceInfo.  object read-only"
check script-gsp has "USP versions 1.0,1.1,1.2,1.3,1.4"
check script-agents grep -qE '^os::012345-SIM000002 +(seen|connected) +1\.4 ' "$tmp/out"
printf 'get Device.DeviceInfo.SerialNumber\nadd Device.DeviceInfo.\nbogus words\nget Device.DeviceInfo.ModelName\n' |
    $C --to os::012345-SIM000004 >"$tmp/out" 2>"$tmp/err"
rc=$?
check script-failure-exit rc_is 1
check script-failure-continues has "Device.DeviceInfo.ModelName = "
check script-failure-line has "line 2: add to os::012345-SIM000004: the agent answered with Error 7018" err
check script-failure-parse has "line 3: unknown request 'bogus'" err
printf 'get Device.DeviceInfo.SerialNumber\n' | $C >"$tmp/out" 2>"$tmp/err"
rc=$?
check script-no-target rc_is 1
check script-no-target-message has "use EID" err
stop_pid "$fleet_pid"
fleet_pid=""

# ---- MQTT 3.1.1 on both sides; a 3.1.1 controller is told it cannot talk
# to an MQTT 5 agent (it hears the agent's MQTTConnectRecord) ----
(sleep 3; echo 'get Device.DeviceInfo.SerialNumber') |
    $C --mqtt-version 3.1.1 --to os::012345-SIM000201 >"$tmp/mix.out" 2>"$tmp/mix.err" &
bg_pid=$!
sleep 1
"$U" agents --count 2 --first-index 201 --broker "$URL" --quiet >"$tmp/fleet5b.out" 2>&1 &
fleet_pid=$!
wait "$bg_pid"
rc=$?
bg_pid=""
stop_pid "$fleet_pid"
cp "$tmp/mix.err" "$tmp/err"
check mqtt-mismatch-exit rc_is 1
check mqtt-mismatch-message has "the agent connected with MQTT 5 (its MQTTConnectRecord): use --mqtt-version 5" err
"$U" agents --count 2 --first-index 101 --broker "$URL" --mqtt-version 3.1.1 --quiet \
    --stats-json "$tmp/fleet311.json" >"$tmp/fleet311.out" 2>&1 &
fleet_pid=$!
if wait_fleet "$tmp/fleet311.json" 2; then
    run $C --mqtt-version 3.1.1 --to os::012345-SIM000102 -e 'get Device.DeviceInfo.SerialNumber'
    check mqtt311-exec rc_is 0
    check mqtt311-output has "Device.DeviceInfo.SerialNumber = GW00000102"
else
    check mqtt311-fleet-up false
fi
stop_pid "$fleet_pid"
fleet_pid=""

# ---- load against 1,000 agents ----
# A glob finds agents by what they announce: start it before the fleet.
$U controller load --broker "$URL" --agents 'os::012345-SIM0011[0-4]?' --count 50 \
    --discover 30 --rate 100 --duration 2 --mix get=1 --json --quiet \
    >"$tmp/glob.json" 2>"$tmp/glob.err" &
bg_pid=$!
sleep 1.5
"$U" agents --count 1000 --first-index 1001 --broker "$URL" --quiet \
    --stats-json "$tmp/fleet1000.json" >"$tmp/fleet1000.out" 2>&1 &
fleet_pid=$!
wait "$bg_pid"
rc=$?
bg_pid=""
cp "$tmp/glob.json" "$tmp/out"
cp "$tmp/glob.err" "$tmp/err"
check load-glob-exit rc_is 0
check load-glob-agents jq_ "$tmp/glob.json" "d['agents'] == 50 and d['agents_gsp_ok'] == 50"
check load-glob-answered jq_ "$tmp/glob.json" "d['offered'] == 200 and d['completed'] == 200"
wait_fleet "$tmp/fleet1000.json" 1000 || check load-fleet-up false

$U controller load --broker "$URL" --agents 'os::012345-SIM{n:06}' --count 1000 --first-index 1001 \
    --rate 1000 --duration 5 --json >"$tmp/out" 2>"$tmp/err"
rc=$?
cp "$tmp/out" "$tmp/load.json"
check load-exit rc_is 0
check load-agents jq_ "$tmp/load.json" "d['agents'] == 1000 and d['agents_gsp_ok'] == 1000"
check load-rate-held jq_ "$tmp/load.json" "d['offered'] == 5000 and abs(d['offered_per_s'] - 1000) <= 20"
check load-all-answered jq_ "$tmp/load.json" "d['completed'] == 5000 and d['responses'] == 5000 and d['timeouts'] == 0 and d['errors'] == 0 and d['not_sent'] == 0"
check load-completed-rate jq_ "$tmp/load.json" "d['completed_per_s'] >= 950"
check load-no-path-errors jq_ "$tmp/load.json" "d['path_errors'] == 0 and d['late'] == 0"
check load-latency jq_ "$tmp/load.json" "0 < d['latency_ms']['p50'] <= d['latency_ms']['p90'] <= d['latency_ms']['p99'] <= d['latency_ms']['max'] < 10000"
check load-mix jq_ "$tmp/load.json" "all(k in d['by_kind'] for k in ('get', 'set', 'operate', 'gsdm')) and abs(d['by_kind']['get']['sent'] - 3500) < 300"
say "load: $(jq_ "$tmp/load.json" "'%.0f/s offered, %.0f/s completed, p50 %.2f ms, p99 %.2f ms' % (d['offered_per_s'], d['completed_per_s'], d['latency_ms']['p50'], d['latency_ms']['p99'])" 2>/dev/null)"
$U controller load --broker "$URL" --count 1000 --first-index 1001 --rate 1000 --duration 2 \
    --quiet >"$tmp/out" 2>"$tmp/err"
rc=$?
check load-text-exit rc_is 0
check load-text-summary grep -qE '^  latency +p50 [0-9.]+ ms  p90 [0-9.]+ ms  p99 [0-9.]+ ms' "$tmp/out"

# The fleet dies mid-run: the run reports timeouts and ends on time. It is
# killed 1.5 s into the load (once the GetSupportedProtocols are answered).
$U controller load --broker "$URL" --count 1000 --first-index 1001 --rate 300 --duration 6 \
    --timeout 2 --mix get=1 --json >"$tmp/kill.json" 2>"$tmp/kill.err" &
bg_pid=$!
t0=$(date +%s)
i=0
while ! grep -q "requests/s for" "$tmp/kill.err" && [ $i -lt 200 ]; do
    sleep 0.05
    i=$((i + 1))
done
sleep 1.5
workers=$(pgrep -P "$fleet_pid")
kill -KILL "$fleet_pid" $workers 2>/dev/null
wait "$fleet_pid" 2>/dev/null
fleet_pid=""
wait "$bg_pid"
rc=$?
bg_pid=""
t1=$(date +%s)
cp "$tmp/kill.json" "$tmp/out"
cp "$tmp/kill.err" "$tmp/err"
check load-killed-exit rc_is 1
check load-killed-in-time [ $((t1 - t0)) -le 15 ]
check load-killed-timeouts jq_ "$tmp/kill.json" "d['timeouts'] > 300 and d['completed'] >= 100 and d['timeouts'] + d['completed'] == d['offered'] == 1800"
check load-killed-message has "some requests failed" err

say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

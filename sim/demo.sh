#!/bin/sh
# make demo: a local mosquitto, 1,000 virtual agents, and the uspsim
# controller driving them for 60 s with live progress, then both summaries.
#
#   sh sim/demo.sh [BUILD] [AGENTS] [SECONDS] [RATE]
set -eu
BUILD=${1:-build}
AGENTS=${2:-1000}
SECONDS_=${3:-60}
RATE=${4:-500}
U=$BUILD/uspsim
[ -x "$U" ] || { echo "demo: $U is missing: run make first" >&2; exit 1; }

TMP=$(mktemp -d)
BROKER_PID=""
AGENTS_PID=""
cleanup() {
    [ -n "$AGENTS_PID" ] && kill "$AGENTS_PID" 2>/dev/null
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold=""; dim=""; off=""
if [ -t 1 ]; then bold=$(printf '\033[1m'); dim=$(printf '\033[2m'); off=$(printf '\033[0m'); fi

cat <<EOF
${bold}uspsim demo${off}
  ${AGENTS} virtual USP agents (home-gateway profile, TR-181 Device:2.19) connect over
  MQTT 5 to a local mosquitto, announce themselves (MQTTConnectRecord, Boot!),
  and the uspsim controller drives them for ${SECONDS_} s: ${RATE} requests per second,
  a mix of Get, Set, asynchronous Operate and GetSupportedDM, every answer
  tracked, notifications acknowledged.

EOF

# The broker: a real mosquitto on a free loopback port.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n' "$PORT" >"$TMP/mosquitto.conf"
"$MOSQ" -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 &
BROKER_PID=$!
n=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null; do
    n=$((n + 1))
    [ $n -lt 100 ] || { echo "demo: mosquitto did not start" >&2; cat "$TMP/mosquitto.log" >&2; exit 1; }
    sleep 0.05
done
URL=mqtt://127.0.0.1:$PORT
echo "${dim}broker   ${off}mosquitto on $URL (pid $BROKER_PID)"

# The fleet, in the background; the controller is already listening when
# the Boot! notifications arrive, and acknowledges them.
(sleep 1; exec "$U" agents --count "$AGENTS" --broker "$URL" --duration $((SECONDS_ + 30)) \
    --quiet --stats-json "$TMP/agents.json" >"$TMP/agents.out" 2>&1) &
AGENTS_PID=$!
echo "${dim}agents   ${off}$AGENTS agents starting (uspsim agents, pid $AGENTS_PID)"
echo "${dim}control  ${off}uspsim controller load: waiting for the agents' Boot!, then $RATE requests/s"
echo

"$U" controller load --broker "$URL" --agents 'os::012345-SIM*' --count "$AGENTS" --discover 30 \
    --rate "$RATE" --duration "$SECONDS_" || status=$?

# Stop the fleet cleanly (DisconnectRecords) and show its summary.
kill -INT "$AGENTS_PID" 2>/dev/null || true
wait "$AGENTS_PID" 2>/dev/null || true
AGENTS_PID=""
echo
cat "$TMP/agents.out"
echo
echo "${dim}Next: uspsim agents --help, uspsim controller --help (try the shell: uspsim controller --broker URL)${off}"
exit "${status:-0}"

#!/bin/sh
# A third-party Controller: the npm package usp-js (pinned in
# tests/integration/usp-js/package.json and its package-lock.json) sends
# Get, Set, Add, Delete, Operate (sync and async) and GetSupportedProtocol
# to a uspsim agent over MQTT 5 through a real mosquitto, and checks the
# answers (tests/integration/usp-js/check.js). The fleet runs with
# --controller-id/--controller-topic naming usp-js, so usp-js is the
# agents' controller; usp-js gets its toId, topics, a unique client ID and
# the MQTT 5 Response Topic explicitly.
# usp-js is installed with `npm ci` into BUILD/usp-js (reused while the
# lockfile is unchanged). When node, npm or the package cannot be had, the
# test FAILS: it is never skipped.
# Usage: sh tests/integration/test-usp-js.sh BUILD
# Prints what it checked; "usp-js: N passed, M failed"; non-zero on failure.
set -u
# shellcheck disable=SC2034 # fl_name is used by lib.sh
fl_name="usp-js"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
fl_init "${1:-build}"

command -v node >/dev/null 2>&1 || fl_fail_setup "node is missing (Debian: nodejs): usp-js cannot run"
command -v npm >/dev/null 2>&1 || fl_fail_setup "npm is missing (Debian: npm): usp-js cannot be installed"

# ---- install usp-js into a folder of this test, from the npm registry ----
src="$fl_root/tests/integration/usp-js"
dest="$fl_build/usp-js"
mkdir -p "$dest" || fl_fail_setup "cannot create $dest"
if [ -f "$dest/node_modules/usp-js/package.json" ] && cmp -s "$src/package-lock.json" "$dest/package-lock.json"; then
    fl_say "usp-js already installed in $dest"
else
    cp "$src/package.json" "$src/package-lock.json" "$dest/" || fl_fail_setup "cannot copy the manifest to $dest"
    t=$(fl_now_ms)
    if ! (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error) >"$fl_tmp/npm.log" 2>&1; then
        sed 's/^/    /' "$fl_tmp/npm.log" | tail -n 30
        rm -rf "$dest/node_modules" "$dest/package-lock.json"
        fl_fail_setup "npm ci of usp-js failed (see above): the npm registry must be reachable"
    fi
    fl_say "usp-js installed into $dest with npm ci in $((($(fl_now_ms) - t) / 1000)) s"
fi
ver=$(cd "$dest" && node -p 'require("./node_modules/usp-js/package.json").version' 2>/dev/null)
want=$(sed -n 's/.*"usp-js": *"\([^"]*\)".*/\1/p' "$src/package.json")
fl_check "usp-js-version ($ver, pinned $want)" [ "$ver" = "$want" ]
cp "$src/check.js" "$dest/check.js" || fl_fail_setup "cannot copy check.js"

# ---- a broker and two agents whose controller is usp-js ----
port=$(fl_free_port)
fl_broker_start "$port"
ctl_eid="self::usp-js-check"
ctl_topic="usp/controller/usp-js-check"
agent="os::012345-SIM000001"
"$fl_uspsim" agents --count 2 --broker "mqtt://127.0.0.1:$port" --mqtt-version 5 \
    --controller-id "$ctl_eid" --controller-topic "$ctl_topic" --quiet \
    --stats-json "$fl_tmp/stats.json" >"$fl_tmp/fleet.log" 2>&1 &
fleet=$!
fl_track "$fleet"
i=0
while [ "$(fl_stat "$fl_tmp/stats.json" connected)" != 2 ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
fl_check "agents-connected" [ "$(fl_stat "$fl_tmp/stats.json" connected)" = 2 ]

t=$(fl_now_ms)
node "$dest/check.js" "$port" "$agent" "$ctl_eid" "$ctl_topic" >"$fl_tmp/check.log" 2>&1
rc=$?
fl_check "usp-js-checks ($(grep -c '^ok' "$fl_tmp/check.log") ok, $(grep -c '^FAIL' "$fl_tmp/check.log") failed, $((($(fl_now_ms) - t) / 1000)) s)" \
    [ "$rc" -eq 0 ]
sed 's/^/    /' "$fl_tmp/check.log"
fl_check "fleet-still-running" kill -0 "$fleet"
fl_stop "$fleet" 30
frc=$?
fl_check "fleet-clean-exit (status $frc)" [ "$frc" -eq 0 ]
sed -n '/summary/,$p' "$fl_tmp/fleet.log" | sed 's/^/    /'
fl_check "fleet-no-errors" grep -Eq "errors +0 Error replies, 0 records dropped" "$fl_tmp/fleet.log"
fl_done

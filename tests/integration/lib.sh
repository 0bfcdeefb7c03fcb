# shellcheck shell=sh disable=SC2154,SC2034 # fl_name comes from the test, fl_uspsim goes to it
# Shell functions shared by the fleet's integration tests (sourced, POSIX
# sh). A test sets `fl_name` (the prefix of its output lines), then calls
# fl_init BUILD; everything it starts is stopped by PID when it exits.
#
#   fl_init BUILD           checks the tools, makes $fl_tmp, sets the traps
#   fl_say TEXT             one output line, "NAME: TEXT"
#   fl_check NAME CMD...    runs a check, counts PASS / FAIL
#   fl_fail_setup TEXT      a failure before the checks could run: exit 1
#   fl_done                 prints "NAME: N passed, M failed", exits 0 or 1
#   fl_free_port            a free TCP port on 127.0.0.1
#   fl_wait_port PORT [S]   until something accepts on 127.0.0.1:PORT
#   fl_broker_start PORT [TAG]  mosquitto on 127.0.0.1:PORT with its own
#                           configuration and log in $fl_tmp (sets
#                           fl_broker_pid; stopped at exit)
#   fl_broker_kill PID      SIGKILL to a broker (a crash)
#   fl_broker_stop PID      SIGTERM to a broker, waits for it
#   fl_track PID            stops PID (SIGTERM, then SIGKILL) at exit
#   fl_untrack PID          forgets PID (it was stopped and reaped)
#   fl_stop PID [S]         SIGINT, waits up to S seconds (default 20), then
#                           SIGKILL; returns the exit status
#   fl_build_driver         builds tests/integration/fleet_check.c against
#                           BUILD/libusp.a (sanitizers as the library) into
#                           $fl_driver
#   fl_stat FILE KEY        KEY of the last line of a --stats-json FILE
#   fl_wait_for FILE TEXT [S]  until TEXT is in FILE (0) or S seconds (1)
#   fl_show_log LOG         the ok/FAIL/# lines of a driver log, indented
#   fl_now_ms               milliseconds since the epoch

fl_passed=0
fl_failed=0
fl_pids=""
fl_broker_pid=""
fl_tmp=""
fl_py=/usr/bin/python3

fl_say() {
    echo "$fl_name: $*"
}

fl_fail_setup() {
    fl_say "$*"
    fl_say "0 passed, 1 failed"
    exit 1
}

fl_check() {
    _name=$1
    shift
    if "$@"; then
        fl_passed=$((fl_passed + 1))
        fl_say "PASS $_name"
    else
        fl_failed=$((fl_failed + 1))
        fl_say "FAIL $_name"
    fi
}

fl_done() {
    fl_say "$fl_passed passed, $fl_failed failed"
    [ "$fl_failed" -eq 0 ]
    exit $?
}

fl_track() {
    fl_pids="$fl_pids $1"
}

fl_untrack() {
    _keep=""
    for _p in $fl_pids; do
        [ "$_p" = "$1" ] || _keep="$_keep $_p"
    done
    fl_pids=$_keep
}

# Stops one process we started: SIGTERM, a moment, then SIGKILL.
fl_kill_pid() {
    [ -n "$1" ] || return 0
    kill -0 "$1" 2>/dev/null || return 0
    kill "$1" 2>/dev/null
    _i=0
    while kill -0 "$1" 2>/dev/null && [ $_i -lt 50 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

fl_cleanup() {
    for _p in $fl_pids; do
        fl_kill_pid "$_p"
    done
    [ -n "$fl_tmp" ] && rm -rf "$fl_tmp"
}

fl_init() {
    fl_build=${1:-build}
    fl_here=$(cd "$(dirname "$0")" && pwd)
    fl_root=$(cd "$fl_here/../.." && pwd)
    cd "$fl_root" || fl_fail_setup "cannot enter $fl_root"
    [ -f "$fl_build/libusp.a" ] || fl_fail_setup "no $fl_build/libusp.a: build it first (make BUILD=$fl_build)"
    [ -x "$fl_build/uspsim" ] || fl_fail_setup "no $fl_build/uspsim: build it first (make BUILD=$fl_build)"
    fl_mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    [ -x "$fl_mosq" ] || fl_fail_setup "mosquitto is missing (Debian: mosquitto)"
    pkg-config --exists libmosquitto || fl_fail_setup "libmosquitto is missing (Debian: libmosquitto-dev)"
    [ -x "$fl_py" ] || fl_fail_setup "$fl_py is missing"
    fl_tmp=$(mktemp -d) || fl_fail_setup "mktemp failed"
    trap fl_cleanup EXIT
    trap 'exit 1' INT TERM
    fl_uspsim="$fl_build/uspsim"
}

fl_free_port() {
    "$fl_py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

fl_wait_port() {
    "$fl_py" - "$1" "${2:-10}" <<'EOF'
import socket, sys, time
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.02)
sys.exit(1)
EOF
}

# The broker of a test: no persistence, anonymous, and queues deep enough
# for a controller that receives a Boot! from each of thousands of agents at
# once (mosquitto's default max_queued_messages of 1000 would drop the rest).
# No message size limit is set: the MTP's max_record decides.
fl_broker_start() {
    _tag=${2:-main}
    cat >"$fl_tmp/mosquitto-$_tag.conf" <<EOF
listener $1 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_connections -1
set_tcp_nodelay true
log_dest file $fl_tmp/broker-$_tag.log
log_type error
log_type warning
log_type notice
EOF
    "$fl_mosq" -c "$fl_tmp/mosquitto-$_tag.conf" >>"$fl_tmp/broker-$_tag.out" 2>&1 &
    fl_broker_pid=$!
    fl_track "$fl_broker_pid"
    fl_wait_port "$1" || fl_fail_setup "mosquitto did not accept on port $1: $(tail -n 5 "$fl_tmp/broker-$_tag.out" "$fl_tmp/broker-$_tag.log" 2>/dev/null)"
}

fl_broker_kill() {
    [ -n "$1" ] || return 0
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    fl_untrack "$1"
}

fl_broker_stop() {
    fl_kill_pid "$1"
    fl_untrack "$1"
}

# SIGINT (the fleet's clean stop), then wait; SIGKILL after S seconds.
# Returns the process's exit status (137 when it had to be killed).
fl_stop() {
    kill -INT "$1" 2>/dev/null
    _i=0
    _max=$((${2:-20} * 10))
    while kill -0 "$1" 2>/dev/null && [ $_i -lt $_max ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        return 137
    fi
    wait "$1"
}

fl_build_driver() {
    mkdir -p "$fl_tmp/gen"
    # Headers made from the same proto/ (the Makefile may have removed its own).
    protoc-c --proto_path=proto --c_out="$fl_tmp/gen" proto/usp-msg-1-4.proto proto/usp-record-1-4.proto ||
        fl_fail_setup "protoc-c failed on proto/"
    # A sanitizer build of libusp needs the same runtime in the driver.
    _san=""
    if command -v nm >/dev/null 2>&1; then
        _syms=$(nm "$fl_build/libusp.a" 2>/dev/null)
        case $_syms in *__asan_*) _san="address" ;; esac
        case $_syms in *__ubsan_*) _san="${_san:+$_san,}undefined" ;; esac
    fi
    _sanflags=""
    [ -n "$_san" ] && _sanflags="-fsanitize=$_san -fno-omit-frame-pointer -fno-sanitize-recover=all"
    fl_driver="$fl_tmp/fleet_check"
    # shellcheck disable=SC2046,SC2086 # flags are meant to split into words
    if ! cc $_sanflags -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow \
            -Wstrict-prototypes -O1 -g -Ilib/include -Ilib -I"$fl_build/gen" -I"$fl_tmp/gen" \
            $(pkg-config --cflags libprotobuf-c libuv libmosquitto) -o "$fl_driver" \
            tests/integration/fleet_check.c "$fl_build/libusp.a" \
            $(pkg-config --libs libprotobuf-c libxml-2.0 libuv openssl libmosquitto) -lm -lpthread \
            >"$fl_tmp/cc.log" 2>&1; then
        sed 's/^/    /' "$fl_tmp/cc.log"
        fl_fail_setup "cannot build tests/integration/fleet_check.c"
    fi
    fl_say "driver built${_san:+ with -fsanitize=$_san}"
}

fl_stat() {
    tail -n 1 "$1" 2>/dev/null | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"
}

fl_wait_for() {
    _i=0
    _max=$((${3:-30} * 20))
    while ! grep -q "$2" "$1" 2>/dev/null; do
        _i=$((_i + 1))
        [ $_i -ge $_max ] && return 1
        sleep 0.05
    done
    return 0
}

# Shows a driver log: its notes and its ok/FAIL lines, indented.
fl_show_log() {
    grep -E '^(ok|FAIL|#)' "$1" | sed 's/^/    /'
}

# Milliseconds since the epoch.
fl_now_ms() {
    date +%s%3N
}

# shellcheck shell=sh disable=SC2034 # rmq_* variables are read by the tests that source this
# A private RabbitMQ for integration tests (sourced, POSIX sh). Nothing of
# the system installation is used but its programs: the node, its epmd,
# configuration, database and logs live in a folder the test owns, every
# listener is on 127.0.0.1 on a free port (AMQP, STOMP, Erlang distribution
# and epmd, so parallel runs do not clash), and both processes are stopped
# by PID. There is no systemd here and the /usr/sbin wrapper switches user
# and writes to /var/log, so the node is started with
# /usr/lib/rabbitmq/bin/rabbitmq-server directly.
#
#   rmq_check               0 when RabbitMQ and its STOMP plugin are installed;
#                           otherwise 1 with the reason in $rmq_why
#                           (Debian: rabbitmq-server)
#   rmq_start DIR [S]       rmq_launch DIR, then rmq_wait S
#   rmq_launch DIR          starts epmd (unless it runs) and a node under DIR
#                           (made if missing) without waiting; 0, or 1 with
#                           $rmq_why. Sets rmq_stomp_port, rmq_amqp_port,
#                           rmq_dist_port, rmq_epmd_port, rmq_pid,
#                           rmq_epmd_pid, rmq_node. Ports already set in those
#                           variables are kept, so a restart comes back on the
#                           same ones (and finds its database again).
#                           With rmq_tls_dir set (a `uspsim certs` folder:
#                           ca.pem, broker.pem, broker.key) the node also has
#                           a STOMP TLS listener on rmq_stomps_port that
#                           requires a client certificate from that CA
#                           (verify_peer, fail_if_no_peer_cert).
#   rmq_wait [S]            waits up to S seconds (default 30) until the STOMP
#                           listener accepts; 0, or 1 with $rmq_why (the node
#                           is then stopped)
#   rmq_kill                SIGKILL to the node (a crash); epmd stays
#   rmq_stop                stops the node (SIGTERM, then SIGKILL) and epmd
#   rmq_log                 the last lines of the node's log and output
#
# The node: user guest/guest (allowed from loopback addresses only), vhost
# "/", the rabbitmq_stomp plugin alone; /queue/NAME destinations make their
# queue on first use. It takes about 5 s to start.

rmq_bin=/usr/lib/rabbitmq/bin
rmq_py=/usr/bin/python3
rmq_why=""
rmq_pid=""
rmq_epmd_pid=""

rmq_check() {
    if [ ! -x "$rmq_bin/rabbitmq-server" ]; then
        rmq_why="RabbitMQ is missing ($rmq_bin/rabbitmq-server; Debian: rabbitmq-server)"
        return 1
    fi
    if ! ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbitmq_stomp-* >/dev/null 2>&1; then
        rmq_why="the RabbitMQ STOMP plugin is missing (Debian: rabbitmq-server ships it)"
        return 1
    fi
    rmq_epmd=$(command -v epmd || echo /usr/bin/epmd)
    if [ ! -x "$rmq_epmd" ]; then
        rmq_why="epmd is missing (Debian: erlang-base)"
        return 1
    fi
    if [ ! -x "$rmq_py" ]; then
        rmq_why="$rmq_py is missing"
        return 1
    fi
    return 0
}

rmq_free_port() {
    "$rmq_py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Until something accepts on 127.0.0.1:$1, $2 seconds at most; gives up
# early when process $3 (if given) is gone.
rmq_wait_port() {
    "$rmq_py" - "$1" "$2" "${3:-0}" <<'EOF'
import os, socket, sys, time
port, limit, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
end = time.time() + limit
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        pass
    if pid:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(2)
    time.sleep(0.05)
sys.exit(1)
EOF
}

# Stops one process we started: SIGTERM, up to 5 s, then SIGKILL.
rmq_stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null
    _rmq_i=0
    while kill -0 "$1" 2>/dev/null && [ $_rmq_i -lt 50 ]; do
        sleep 0.1
        _rmq_i=$((_rmq_i + 1))
    done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

rmq_start() {
    rmq_launch "$1" && rmq_wait "${2:-30}"
}

rmq_launch() {
    rmq_dir=$1
    rmq_check || return 1
    mkdir -p "$rmq_dir/home" "$rmq_dir/mnesia" "$rmq_dir/log" || {
        rmq_why="cannot make $rmq_dir"
        return 1
    }
    [ -n "${rmq_stomp_port:-}" ] || rmq_stomp_port=$(rmq_free_port)
    [ -n "${rmq_amqp_port:-}" ] || rmq_amqp_port=$(rmq_free_port)
    [ -n "${rmq_dist_port:-}" ] || rmq_dist_port=$(rmq_free_port)
    [ -n "${rmq_epmd_port:-}" ] || rmq_epmd_port=$(rmq_free_port)
    rmq_tls_conf=""
    if [ -n "${rmq_tls_dir:-}" ]; then
        [ -n "${rmq_stomps_port:-}" ] || rmq_stomps_port=$(rmq_free_port)
        # The node's Erlang reads the PEM files itself: copies it can read.
        mkdir -p "$rmq_dir/tls" &&
            cp "$rmq_tls_dir/ca.pem" "$rmq_tls_dir/broker.pem" "$rmq_tls_dir/broker.key" \
                "$rmq_dir/tls/" &&
            chmod 644 "$rmq_dir/tls/"* || {
            rmq_why="cannot copy the TLS files from $rmq_tls_dir"
            return 1
        }
        rmq_tls_conf="stomp.listeners.ssl.1 = 127.0.0.1:$rmq_stomps_port
ssl_options.cacertfile = $rmq_dir/tls/ca.pem
ssl_options.certfile = $rmq_dir/tls/broker.pem
ssl_options.keyfile = $rmq_dir/tls/broker.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true"
    fi
    # One node name per folder: a restart finds its own database again.
    [ -n "${rmq_node:-}" ] || rmq_node="usptest$rmq_stomp_port@localhost"
    cat >"$rmq_dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$rmq_amqp_port
stomp.listeners.tcp.1 = 127.0.0.1:$rmq_stomp_port
loopback_users.guest = true
log.file.level = info
log.console = false
$rmq_tls_conf
EOF
    echo '[rabbitmq_stomp].' >"$rmq_dir/enabled_plugins"
    # Sourced by rabbitmq-env: nothing from /etc/rabbitmq.
    : >"$rmq_dir/rabbitmq-env.conf"
    if [ -z "$rmq_epmd_pid" ] || ! kill -0 "$rmq_epmd_pid" 2>/dev/null; then
        "$rmq_epmd" -address 127.0.0.1 -port "$rmq_epmd_port" >>"$rmq_dir/epmd.out" 2>&1 &
        rmq_epmd_pid=$!
        if ! rmq_wait_port "$rmq_epmd_port" 5 "$rmq_epmd_pid"; then
            rmq_why="epmd did not listen on 127.0.0.1:$rmq_epmd_port: $(tail -n 3 "$rmq_dir/epmd.out")"
            return 1
        fi
    fi
    HOME="$rmq_dir/home" \
        RABBITMQ_NODENAME="$rmq_node" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$rmq_amqp_port" \
        RABBITMQ_DIST_PORT="$rmq_dist_port" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        ERL_EPMD_PORT="$rmq_epmd_port" \
        RABBITMQ_CONFIG_FILE="$rmq_dir/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$rmq_dir/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$rmq_dir/mnesia" \
        RABBITMQ_LOG_BASE="$rmq_dir/log" \
        ERL_CRASH_DUMP="$rmq_dir/erl_crash.dump" \
        RABBITMQ_CONF_ENV_FILE="$rmq_dir/rabbitmq-env.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$rmq_dir/advanced.config" \
        RABBITMQ_PID_FILE="$rmq_dir/node.pid" \
        RUNNING_UNDER_SYSTEMD=true \
        "$rmq_bin/rabbitmq-server" >>"$rmq_dir/node.out" 2>&1 &
    rmq_pid=$!
    return 0
}

rmq_wait() {
    _rmq_limit=${1:-30}
    if [ -z "$rmq_pid" ]; then
        rmq_why="RabbitMQ was not launched"
        return 1
    fi
    rmq_wait_port "$rmq_stomp_port" "$_rmq_limit" "$rmq_pid"
    _rmq_rc=$?
    if [ $_rmq_rc -eq 0 ] && [ -n "${rmq_tls_dir:-}" ]; then
        rmq_wait_port "$rmq_stomps_port" 10 "$rmq_pid"
        _rmq_rc=$?
        [ $_rmq_rc -eq 1 ] && _rmq_rc=3
    fi
    case $_rmq_rc in
    0) return 0 ;;
    3) rmq_why="RabbitMQ did not accept STOMP over TLS on 127.0.0.1:$rmq_stomps_port: $(rmq_log)" ;;
    2) rmq_why="RabbitMQ exited while starting: $(rmq_log)" ;;
    *) rmq_why="RabbitMQ did not accept STOMP on 127.0.0.1:$rmq_stomp_port within $_rmq_limit s: $(rmq_log)" ;;
    esac
    rmq_stop_pid "$rmq_pid"
    rmq_pid=""
    return 1
}

rmq_kill() {
    [ -n "$rmq_pid" ] || return 0
    kill -9 "$rmq_pid" 2>/dev/null
    wait "$rmq_pid" 2>/dev/null
    rmq_pid=""
    return 0
}

rmq_stop() {
    rmq_stop_pid "$rmq_pid"
    rmq_pid=""
    rmq_stop_pid "$rmq_epmd_pid"
    rmq_epmd_pid=""
}

rmq_log() {
    tail -n 8 "$rmq_dir/node.out" "$rmq_dir/log/"*.log 2>/dev/null
}

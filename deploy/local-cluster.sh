#!/usr/bin/env bash
# A distributed tierq on one machine: N replicas of `tierq serve` on shared PostgreSQL and
# Redis, behind nginx.
#
#   deploy/local-cluster.sh start N     nginx on :8080, replicas on :8081..:808N
#   deploy/local-cluster.sh status
#   deploy/local-cluster.sh stop
#
# Environment (defaults in brackets):
#   TIERQ_DATABASE_URL  [postgresql://postgres@127.0.0.1:5432/test]
#   TIERQ_REDIS_URL     [redis://127.0.0.1:6379/0]
#   other TIERQ_*       passed to every replica as they are
#   CLUSTER_PORT        nginx port [8080]; replica i listens on CLUSTER_PORT+i
#   CLUSTER_DIR         pid files, logs, nginx prefix [./.cluster]
#   NGINX               nginx binary [nginx on PATH, else /usr/sbin/nginx]
#   CLUSTER_REPLICA_CMD replica command, {port} and {node} substituted
#                       [.venv/bin/tierq serve --host 127.0.0.1 --port {port}]
#   CLUSTER_READY_PATH  path polled until a replica is ready [/health/ready]
# Run from the repository root (it uses .venv/bin/tierq).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
here=$PWD/deploy
cluster_dir=${CLUSTER_DIR:-$PWD/.cluster}
case $cluster_dir in /*) ;; *) cluster_dir=$PWD/$cluster_dir ;; esac
port=${CLUSTER_PORT:-8080}
nginx_bin=${NGINX:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}
default_cmd="$PWD/.venv/bin/tierq serve --host 127.0.0.1 --port {port}"
replica_cmd=${CLUSTER_REPLICA_CMD:-$default_cmd}
ready_path=${CLUSTER_READY_PATH:-/health/ready}
# Replicas get SIGTERM and this long to hand back their tasks (tierq's shutdown grace is 30 s).
stop_wait=${CLUSTER_STOP_WAIT:-40}

run_dir=$cluster_dir/run
log_dir=$cluster_dir/logs
nginx_dir=$cluster_dir/nginx

die() {
    echo "local-cluster: $*" >&2
    exit 1
}

# A zombie still answers kill -0; it is not alive for us.
alive() {
    local pid state
    [ -f "$1" ] || return 1
    pid=$(cat "$1")
    state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

http_ok() {
    python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status < 300 else 1)
except Exception:
    sys.exit(1)
EOF
}

wait_ready() {
    local url=$1 pidfile=$2 i
    for i in $(seq 1 120); do
        http_ok "$url" && return 0
        alive "$pidfile" || return 1
        sleep 0.25
    done
    return 1
}

start() {
    local n=$1 i p pidfile
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || die "N must be a positive number"
    if [ -z "${CLUSTER_REPLICA_CMD:-}" ] && [ ! -x .venv/bin/tierq ]; then
        die "no .venv/bin/tierq: python3 -m venv .venv && .venv/bin/pip install -e '.[distributed]'"
    fi
    [ -x "$nginx_bin" ] || die "no nginx at $nginx_bin (apt-get install nginx-light, or set NGINX)"
    for pidfile in "$run_dir"/*.pid; do
        [ -e "$pidfile" ] || continue
        alive "$pidfile" && die "already running ($pidfile): stop it first"
        rm -f "$pidfile"
    done
    mkdir -p "$run_dir" "$log_dir" "$nginx_dir"

    export TIERQ_DATABASE_URL=${TIERQ_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}
    export TIERQ_REDIS_URL=${TIERQ_REDIS_URL:-redis://127.0.0.1:6379/0}

    local ports=()
    for i in $(seq 1 "$n"); do
        p=$((port + i))
        ports+=("$p")
        local node="replica-$i" cmd
        cmd=${replica_cmd//"{port}"/$p}
        cmd=${cmd//"{node}"/$node}
        # tierq refuses unknown TIERQ_* settings; the test suite's TIERQ_TEST_* are not its own.
        (
            for v in $(compgen -e | grep '^TIERQ_TEST_' || true); do unset "$v"; done
            export TIERQ_NODE_ID=$node
            # shellcheck disable=SC2086  # the command is a word list on purpose
            exec setsid $cmd </dev/null >>"$log_dir/$node.log" 2>&1
        ) &
        echo $! >"$run_dir/$node.pid"
        echo "local-cluster: $node on 127.0.0.1:$p (pid $!, log $log_dir/$node.log)"
    done
    for i in $(seq 1 "$n"); do
        wait_ready "http://127.0.0.1:$((port + i))$ready_path" "$run_dir/replica-$i.pid" ||
            die "replica-$i is not ready; see $log_dir/replica-$i.log (stop with: $0 stop)"
    done

    "$here/render-nginx.sh" -o "$nginx_dir" "$port" "${ports[@]}" >/dev/null
    "$nginx_bin" -t -q -p "$nginx_dir/" -c "$nginx_dir/nginx.conf" -e stderr ||
        die "nginx config test failed"
    setsid "$nginx_bin" -p "$nginx_dir/" -c "$nginx_dir/nginx.conf" -e stderr \
        </dev/null >>"$log_dir/nginx.log" 2>&1 &
    echo $! >"$run_dir/nginx.pid"
    wait_ready "http://127.0.0.1:$port$ready_path" "$run_dir/nginx.pid" ||
        die "nginx on :$port does not answer; see $log_dir/nginx.log and $nginx_dir/error.log"
    echo "local-cluster: nginx on 127.0.0.1:$port (pid $(cat "$run_dir/nginx.pid")) -> ${ports[*]}"
}

stop() {
    local pidfile pid name i
    [ -d "$run_dir" ] || {
        echo "local-cluster: nothing to stop"
        return 0
    }
    # nginx first, so no new request reaches a replica that is draining.
    for pidfile in "$run_dir"/nginx.pid "$run_dir"/replica-*.pid; do
        [ -e "$pidfile" ] || continue
        name=$(basename "$pidfile" .pid)
        if alive "$pidfile"; then
            pid=$(cat "$pidfile")
            kill -TERM "$pid" 2>/dev/null || true
            echo "local-cluster: sent SIGTERM to $name (pid $pid)"
        fi
    done
    for pidfile in "$run_dir"/nginx.pid "$run_dir"/replica-*.pid; do
        [ -e "$pidfile" ] || continue
        name=$(basename "$pidfile" .pid)
        for i in $(seq 1 $((stop_wait * 4))); do
            alive "$pidfile" || break
            sleep 0.25
        done
        if alive "$pidfile"; then
            kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
            echo "local-cluster: $name did not stop in ${stop_wait}s; killed"
        fi
        rm -f "$pidfile"
    done
    echo "local-cluster: stopped"
}

status() {
    local pidfile name rc=0
    if ! compgen -G "$run_dir/*.pid" >/dev/null; then
        echo "local-cluster: not running"
        return 3
    fi
    for pidfile in "$run_dir"/nginx.pid "$run_dir"/replica-*.pid; do
        [ -e "$pidfile" ] || continue
        name=$(basename "$pidfile" .pid)
        if alive "$pidfile"; then
            echo "$name: running (pid $(cat "$pidfile"))"
        else
            echo "$name: dead (stale pid file)"
            rc=1
        fi
    done
    if http_ok "http://127.0.0.1:$port$ready_path"; then
        echo "nginx :$port$ready_path: ok"
    else
        echo "nginx :$port$ready_path: not ready"
        rc=1
    fi
    return "$rc"
}

case ${1:-} in
start) start "${2:-3}" ;;
stop) stop ;;
status) status ;;
*)
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

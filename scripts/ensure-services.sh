# shellcheck shell=bash
# Make sure the tests have a PostgreSQL, a Redis, an nginx binary and a RabbitMQ, then export
#   TIERQ_TEST_POSTGRES_URL  TIERQ_TEST_REDIS_URL  TIERQ_TEST_NGINX  TIERQ_TEST_AMQP_URL
#
# Sourced (not executed) by scripts/test so the exports reach pytest:
#   source scripts/ensure-services.sh || exit 1
#
# Order for each service: an URL already given and reachable; the machine's service on its
# standard port; the machine's service started with its usual command; the package installed
# with apt and a throwaway instance on a free port, stopped by an EXIT trap. Throwaway
# instances never touch a running machine service.
#
# Knobs (read, never exported, so they cannot leak into `tierq serve` processes):
#   TIERQ_TEST_PG_PORT     port probed for the machine's PostgreSQL (default 5432)
#   TIERQ_TEST_REDIS_PORT  port probed for the machine's Redis (default 6379)
# A port other than the default skips "start the machine's service", so pointing one at a
# port where nothing listens exercises the throwaway path without stopping anything.
#
# Note: tierq's settings refuse unknown TIERQ_* variables, so tests that spawn `tierq serve`
# must drop TIERQ_TEST_* from the child's environment.
#
# This file runs inside the caller's shell (which may have `set -euo pipefail`): every step
# checks its own status and the whole thing returns non-zero instead of exiting.

_tq_log() { printf 'ensure-services: %s\n' "$*" >&2; }

_tq_cleanup_cmds=()

_tq_cleanup() {
    local cmd
    for cmd in "${_tq_cleanup_cmds[@]+"${_tq_cleanup_cmds[@]}"}"; do
        eval "$cmd" >/dev/null 2>&1 || true
    done
    _tq_cleanup_cmds=()
}

_tq_on_exit() {
    _tq_cleanup_cmds+=("$1")
    # One EXIT trap for every throwaway instance; INT/TERM turn into an exit so it runs.
    trap _tq_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

_tq_free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

_tq_as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        _tq_log "need root to run: $*"
        return 1
    fi
}

_tq_apt_install() {
    # Keep apt from starting the packages' own daemons (nginx on :80, a second cluster):
    # this script starts exactly what it needs and nothing else.
    local policy=/usr/sbin/policy-rc.d added=0 rc=0
    if [ ! -e "$policy" ]; then
        _tq_as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy" && added=1
    fi
    _tq_log "installing $* with apt"
    _tq_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null || rc=$?
    if [ "$rc" = 0 ]; then
        _tq_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            -o DPkg::Lock::Timeout=120 --no-install-recommends "$@" </dev/null >/dev/null || rc=$?
    fi
    if [ "$added" = 1 ]; then _tq_as_root rm -f "$policy"; fi
    return "$rc"
}

# ---------------------------------------------------------------------------- PostgreSQL

_tq_pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    else
        return 1
    fi
}

# True when URL accepts a connection and answers a query (not merely "the port is open").
_tq_pg_ok() {
    local url=$1 out
    if command -v psql >/dev/null 2>&1; then
        out=$(PGCONNECT_TIMEOUT=3 psql "$url" -XtAc 'select 1' 2>/dev/null) || return 1
        [ "$out" = 1 ]
    else
        python3 - "$url" <<'EOF' 2>/dev/null
import asyncio, sys
import asyncpg
async def main() -> None:
    conn = await asyncpg.connect(sys.argv[1], timeout=3)
    try:
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()
asyncio.run(main())
EOF
    fi
}

# Creates database `test` on 127.0.0.1:PORT if missing (trust auth, user postgres).
_tq_pg_create_test_db() {
    local port=$1 base="postgresql://postgres@127.0.0.1:$1/postgres"
    if _tq_pg_ok "postgresql://postgres@127.0.0.1:$port/test"; then return 0; fi
    command -v psql >/dev/null 2>&1 || return 1
    # A concurrent run may create it first: judge by the re-check, not by CREATE's status.
    PGCONNECT_TIMEOUT=3 psql "$base" -Xqc 'CREATE DATABASE test' >/dev/null 2>&1 || true
    _tq_pg_ok "postgresql://postgres@127.0.0.1:$port/test"
}

_tq_pg_answers() {
    local port=$1
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p "$port" -t 3
    else
        _tq_pg_ok "postgresql://postgres@127.0.0.1:$port/postgres"
    fi
}

_tq_pg_throwaway() {
    local bindir port dir run=()
    bindir=$(_tq_pg_bindir) || { _tq_log "postgres: no initdb found"; return 1; }
    port=$(_tq_free_port) || return 1
    dir=$(mktemp -d "${TMPDIR:-/tmp}/tierq-pg.XXXXXX") || return 1
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses to run as root.
        chown postgres: "$dir" || return 1
        run=(runuser -u postgres --)
    fi
    _tq_on_exit "${run[*]} '$bindir/pg_ctl' -D '$dir/data' -m immediate -w stop; rm -rf '$dir'"
    "${run[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1 || { _tq_log "postgres: initdb failed, see $dir/initdb.log"; return 1; }
    # fsync off: a throwaway cluster never needs to survive a crash, and tests run faster.
    "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" \
        start >/dev/null || { _tq_log "postgres: pg_ctl start failed, see $dir/server.log"; return 1; }
    _tq_pg_create_test_db "$port" || { _tq_log "postgres: cannot create database test"; return 1; }
    export TIERQ_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/test"
    _tq_log "postgres: started throwaway instance on 127.0.0.1:$port (data in $dir, stopped on exit)"
}

_tq_ensure_postgres() {
    local port=${TIERQ_TEST_PG_PORT:-5432}
    if [ -n "${TIERQ_TEST_POSTGRES_URL:-}" ]; then
        if _tq_pg_ok "$TIERQ_TEST_POSTGRES_URL"; then
            _tq_log "postgres: using TIERQ_TEST_POSTGRES_URL as given"
            return 0
        fi
        _tq_log "postgres: TIERQ_TEST_POSTGRES_URL is set but not reachable; looking further"
    fi
    if _tq_pg_answers "$port" && _tq_pg_create_test_db "$port"; then
        export TIERQ_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/test"
        _tq_log "postgres: using the running server on 127.0.0.1:$port"
        return 0
    fi
    if [ "$port" = 5432 ] && command -v pg_ctlcluster >/dev/null 2>&1 &&
        [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
        local version
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        if _tq_as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 ||
            _tq_pg_answers "$port"; then
            local _
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                _tq_pg_answers "$port" && break
                sleep 1
            done
            if _tq_pg_create_test_db "$port"; then
                export TIERQ_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/test"
                _tq_log "postgres: started the machine's cluster $version/main on 127.0.0.1:$port"
                return 0
            fi
        fi
    fi
    if ! _tq_pg_bindir >/dev/null || ! command -v psql >/dev/null 2>&1; then
        _tq_apt_install postgresql || { _tq_log "postgres: apt install failed"; return 1; }
    fi
    _tq_pg_throwaway
}

# --------------------------------------------------------------------------------- Redis

_tq_redis_ping() {
    # Args are redis-cli connection options (-h H -p P, or -u URL).
    local out
    if command -v redis-cli >/dev/null 2>&1; then
        out=$(timeout 5 redis-cli "$@" ping 2>/dev/null) || return 1
        [ "$out" = PONG ]
    else
        return 1
    fi
}

_tq_redis_throwaway() {
    local port dir pid
    port=$(_tq_free_port) || return 1
    dir=$(mktemp -d "${TMPDIR:-/tmp}/tierq-redis.XXXXXX") || return 1
    # noeviction: tierq refuses to start on a Redis that may evict queue keys.
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --maxmemory-policy noeviction --dir "$dir" --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" >/dev/null || { _tq_log "redis: redis-server failed"; return 1; }
    local _
    for _ in $(seq 1 50); do
        [ -s "$dir/redis.pid" ] && _tq_redis_ping -h 127.0.0.1 -p "$port" && break
        sleep 0.1
    done
    pid=$(cat "$dir/redis.pid" 2>/dev/null) || { _tq_log "redis: no pid file, see $dir/redis.log"; return 1; }
    _tq_on_exit "kill $pid; sleep 0.2; rm -rf '$dir'"
    _tq_redis_ping -h 127.0.0.1 -p "$port" || { _tq_log "redis: throwaway does not answer"; return 1; }
    export TIERQ_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
    _tq_log "redis: started throwaway instance on 127.0.0.1:$port (pid $pid, stopped on exit)"
}

_tq_ensure_redis() {
    local port=${TIERQ_TEST_REDIS_PORT:-6379}
    if [ -n "${TIERQ_TEST_REDIS_URL:-}" ]; then
        if _tq_redis_ping -u "$TIERQ_TEST_REDIS_URL"; then
            _tq_log "redis: using TIERQ_TEST_REDIS_URL as given"
            return 0
        fi
        _tq_log "redis: TIERQ_TEST_REDIS_URL is set but not reachable; looking further"
    fi
    if _tq_redis_ping -h 127.0.0.1 -p "$port"; then
        export TIERQ_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
        _tq_log "redis: using the running server on 127.0.0.1:$port"
        return 0
    fi
    if [ "$port" = 6379 ] && command -v redis-server >/dev/null 2>&1; then
        # The machine's usual command where its directories exist, a plain one otherwise.
        if [ -d /var/lib/redis ] && [ -d /var/log/redis ]; then
            redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
                --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1
        else
            redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
                --appendonly no >/dev/null 2>&1
        fi
        local _
        for _ in $(seq 1 50); do
            _tq_redis_ping -h 127.0.0.1 -p 6379 && break
            sleep 0.1
        done
        if _tq_redis_ping -h 127.0.0.1 -p 6379; then
            export TIERQ_TEST_REDIS_URL="redis://127.0.0.1:6379/0"
            _tq_log "redis: started the machine's redis-server on 127.0.0.1:6379"
            return 0
        fi
    fi
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        _tq_apt_install redis-server || { _tq_log "redis: apt install failed"; return 1; }
    fi
    _tq_redis_throwaway
}

# --------------------------------------------------------------------------------- nginx

_tq_ensure_nginx() {
    local bin
    bin=$(command -v nginx 2>/dev/null || true)
    [ -z "$bin" ] && [ -x /usr/sbin/nginx ] && bin=/usr/sbin/nginx
    if [ -z "$bin" ]; then
        _tq_apt_install nginx-light || _tq_apt_install nginx || {
            _tq_log "nginx: apt install failed"
            return 1
        }
        bin=/usr/sbin/nginx
        [ -x "$bin" ] || { _tq_log "nginx: not found after install"; return 1; }
        _tq_log "nginx: installed, using $bin"
    else
        _tq_log "nginx: using $bin"
    fi
    export TIERQ_TEST_NGINX="$bin"
}

# ------------------------------------------------------------------------------ RabbitMQ

_tq_amqp_up() { (echo >/dev/tcp/127.0.0.1/5672) >/dev/null 2>&1; }

# The optional event sink's tests need a broker: the machine's on 5672, else started (and
# installed with apt when missing). guest/guest is RabbitMQ's default for localhost.
_tq_ensure_rabbitmq() {
    local i
    if ! _tq_amqp_up; then
        if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
            _tq_apt_install rabbitmq-server || {
                _tq_log "rabbitmq: apt install failed"
                return 1
            }
        fi
        _tq_log "rabbitmq: starting the machine's server"
        { _tq_as_root service rabbitmq-server start || _tq_as_root rabbitmq-server -detached; } \
            >/dev/null 2>&1 || true
        for i in $(seq 90); do
            _tq_amqp_up && break
            sleep 1
        done
        _tq_amqp_up || {
            _tq_log "rabbitmq: not reachable on 127.0.0.1:5672"
            return 1
        }
    fi
    _tq_log "rabbitmq: using 127.0.0.1:5672"
    export TIERQ_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/"
}

# ------------------------------------------------------------------------------ Chromium

# The dashboard's browser tests drive Debian's Chromium with Playwright (Playwright's own
# browser download is not reachable here): installed with apt when missing.
_tq_ensure_chromium() {
    local bin
    bin=$(command -v chromium 2>/dev/null || true)
    if [ -z "$bin" ]; then
        _tq_apt_install chromium || { _tq_log "chromium: apt install failed"; return 1; }
        bin=$(command -v chromium 2>/dev/null || echo /usr/bin/chromium)
        [ -x "$bin" ] || { _tq_log "chromium: not found after install"; return 1; }
    fi
    _tq_log "chromium: using $bin"
    export TIERQ_TEST_CHROMIUM="$bin"
}

_tq_ensure_services() {
    local rc=0
    _tq_ensure_postgres || rc=1
    _tq_ensure_redis || rc=1
    _tq_ensure_nginx || rc=1
    _tq_ensure_rabbitmq || rc=1
    _tq_ensure_chromium || rc=1
    return "$rc"
}

_tq_ensure_services

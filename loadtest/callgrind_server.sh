#!/bin/bash
# Instructions the server process executes for an end-to-end run of N tasks, counted by
# valgrind's callgrind: repeatable whatever else the machine is doing, unlike wall-clock rates.
#   loadtest/callgrind_server.sh TREE N [distributed]
# TREE is a checkout (PYTHONPATH), so two trees can be compared side by side; the difference of
# two runs with different N, divided by the difference in N, is the cost per task without the
# start-up. "distributed" runs the server on the local PostgreSQL and Redis in a fresh schema
# and key prefix (dropped afterwards).
set -u
tree=$(cd "$1" && pwd); n=$2; mode=${3:-embedded}
venv=$(cd "$(dirname "$0")/.." && pwd)/.venv
d=$(mktemp -d); port=$((20000 + RANDOM % 10000)); tag=cg_$RANDOM$RANDOM
db="sqlite:///$d/b.db"; extra=()
if [ "$mode" = distributed ]; then
    db="postgresql://postgres@127.0.0.1:5432/test"
    extra=(TIERQ_DATABASE_SCHEMA=$tag TIERQ_REDIS_URL=redis://127.0.0.1:6379/0 TIERQ_REDIS_PREFIX=$tag)
fi
cd "$d"
env PYTHONPATH="$tree" TIERQ_DATABASE_URL="$db" "${extra[@]}" TIERQ_PORT=$port TIERQ_LOG_LEVEL=WARNING valgrind --tool=callgrind --callgrind-out-file=$d/cg.out "$venv/bin/python" -m tierq serve > $d/log 2>&1 &
pid=$!
for i in $(seq 600); do curl -sf localhost:$port/health/ready >/dev/null && break; sleep 0.5; done
PYTHONPATH="$tree" timeout 900 "$venv/bin/python" "$tree/loadtest/bench_e2e.py" --url http://127.0.0.1:$port --n $n --concurrency 2 > $d/bench 2>&1
kill -TERM $pid; wait $pid 2>/dev/null
if [ "$mode" = distributed ]; then
    psql -q "$db" -c "DROP SCHEMA IF EXISTS $tag CASCADE" >/dev/null 2>&1
    redis-cli --scan --pattern "{$tag}*" | xargs -r redis-cli del >/dev/null
fi
echo "$mode $(basename "$tree") $n $(grep Collected $d/log | awk '{print $4}') $(grep total_rate $d/bench)"

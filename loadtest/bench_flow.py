"""Flow control's cost, side by side in one run: the end-to-end benchmark (bench_e2e.py, noop
tasks spread over five queues q0..q4) on a fresh server with

- off: circuit breakers off (TIERQ_BREAKERS=false), no queue limits;
- breakers: breakers on (the default: every task's outcome counted, every start checked),
  no limits;
- limited: breakers on and a max_running limit on q0 (TIERQ_QUEUE_LIMITS), high enough not to
  throttle noop tasks, so what is measured is the limit's machinery: embedded, the gate
  counting q0's starts; distributed, q0's tasks never kept by the submitting replica and
  every claim of q0 checked against the limit in the claim script.

    .venv/bin/python loadtest/bench_flow.py --pairs 2                  # embedded
    .venv/bin/python loadtest/bench_flow.py --pairs 2 --distributed 1  # PostgreSQL + Redis

Printed: each run's rate and each variant's ratio to "off" within its round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

from bench_e2e import run, spawn_server, start_cluster, stop_cluster

VARIANTS = {
    "off": ["TIERQ_BREAKERS=false"],
    "breakers": [],
    "limited": ['TIERQ_QUEUE_LIMITS={"q0": {"max_running": 1000}}'],
}


def one_run(args: argparse.Namespace, env: list[str]) -> float:
    run_args = argparse.Namespace(**vars(args))
    run_args.env = list(args.env) + env
    run_args.priority_mix = False
    run_args.api_key = None
    proc = workdir = cluster_env = None
    if args.distributed:
        url, cluster_env = start_cluster(run_args)
    else:
        proc, url, workdir = spawn_server(run_args)
    try:
        e2e = asyncio.run(run(run_args, url))
    finally:
        if cluster_env is not None:
            stop_cluster(cluster_env)
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return float(e2e["total_rate"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="rounds of the three variants")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--queues", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--distributed", type=int, default=0, metavar="N")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", help="write the runs as JSON here")
    args = parser.parse_args()
    args.profile = None
    rounds: list[dict[str, object]] = []
    for i in range(args.pairs):
        rates = {name: one_run(args, env) for name, env in VARIANTS.items()}
        ratios = {name: round(rate / rates["off"], 3) for name, rate in rates.items()}
        rounds.append({"round": i, "rates": rates, "over_off": ratios})
        print(json.dumps(rounds[-1]), flush=True)
    mean = {
        name: round(statistics.fmean(r["over_off"][name] for r in rounds), 3)  # type: ignore[index]
        for name in VARIANTS
    }
    mode = f"distributed x{args.distributed}" if args.distributed else "embedded"
    print(json.dumps({"mode": mode, "mean_over_off": mean}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"mode": mode, "rounds": rounds, "mean": mean}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

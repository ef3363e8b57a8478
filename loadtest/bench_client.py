"""The Python client's submit_many against bench_e2e.py's own submitter, side by side on fresh
embedded servers: N noop tasks from one process, in batches of --batch.

- e2e: bench_e2e.py's submitter (raw aiohttp, --concurrency batches in flight);
- client: ``Client.submit_many`` (blocking, one batch in flight);
- async: ``AsyncClient.submit_many(concurrency=--concurrency)``.

Each run: tasks/s from first submit to the last batch acknowledged, the client's CPU seconds
per 100k tasks, and its peak RSS (the tasks come from a generator, never a list).

    .venv/bin/python loadtest/bench_client.py --n 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench_e2e import run, spawn_server

from tierq.client import AsyncClient, Client


def tasks(n: int) -> Iterator[dict[str, Any]]:
    task = {"type": "noop", "payload": {"n": 1}}
    for _ in range(n):
        yield dict(task)


def measured(submit: Any) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    count = submit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "tasks": count,
        "rate": round(count / wall),
        "cpu_s_per_100k": round(cpu / count * 100_000, 2),
    }


def one(args: argparse.Namespace, variant: str) -> dict[str, float]:
    server_args = argparse.Namespace(env=list(args.env), profile=None)
    proc, url, workdir = spawn_server(server_args)
    try:
        if variant == "e2e":
            run_args = argparse.Namespace(**vars(args))
            run_args.priority_mix, run_args.queues, run_args.api_key = False, 1, None
            cpu = time.process_time()
            figures = asyncio.run(run(run_args, url))
            cpu = time.process_time() - cpu
            return {
                "tasks": args.n,
                "rate": float(figures["submit_rate"]),  # type: ignore[arg-type]
                "cpu_s_per_100k (incl. waiting for the drain)": round(cpu / args.n * 1e5, 2),
            }
        if variant == "client":
            with Client(url, timeout=120) as tq:
                tq.health()
                return measured(lambda: len(tq.submit_many(tasks(args.n), args.batch)))

        async def submit_async() -> dict[str, float]:
            async with AsyncClient(url, timeout=120) as tq:
                await tq.health()
                cpu, wall = time.process_time(), time.perf_counter()
                ids = await tq.submit_many(tasks(args.n), args.batch, args.concurrency)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                return {
                    "tasks": len(ids),
                    "rate": round(len(ids) / wall),
                    "cpu_s_per_100k": round(cpu / len(ids) * 100_000, 2),
                }

        return asyncio.run(submit_async())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--variants", default="e2e,client,async")
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args()
    results = {}
    for variant in args.variants.split(","):
        results[variant] = one(args, variant)
        results[variant]["client_peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
        print(json.dumps({variant: results[variant]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

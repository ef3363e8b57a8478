"""The dashboard's queries on a big record tier: N noop tasks (payload {"customer_id": i %
1000}) and F dead letters submitted to a fresh embedded server, then every query the
dashboard's pages make, timed (p50 / p99 / max over --repeat calls, one after another).

    .venv/bin/python loadtest/bench_ui_queries.py --n 2000000 --failed 1000
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
import time

import httpx
from bench_e2e import spawn_server

from tierq.client import AsyncClient

QUERIES = {
    "overview: statistics": "/api/v1/tasks/statistics",
    "overview: metrics, 15 min": "/health/metrics?hours=0.25&bucket_seconds=60",
    "overview: queues": "/api/v1/queues",
    "overview: replicas": "/health/workers",
    "tasks: first page": "/api/v1/tasks?sort=created_at,desc&size=50",
    "tasks: failed, first page": "/api/v1/tasks?status=failed&sort=created_at,desc&size=50",
    "tasks: one queue, first page": "/api/v1/tasks?queue=default&sort=created_at,desc&size=50",
    "tasks: search payload field (newest 100k)": "/api/v1/tasks?payload.customer_id=42&size=50",
    "tasks: search name prefix (newest 100k)": "/api/v1/tasks?name=none-&size=50",
    "dead letters: 1,000 failed": "/api/v1/tasks?status=failed&size=1000&sort=created_at,desc",
    "events: a page": "/api/v1/events?limit=100",
}


async def seed(url: str, n: int, failed: int) -> None:
    async with AsyncClient(url, timeout=300) as tq:
        tasks = ({"type": "noop", "payload": {"customer_id": i % 1000}} for i in range(n))
        await tq.submit_many(tasks, chunk_size=1000, concurrency=4)
        bad = ({"type": "dummy", "payload": {"fail_always": True}, "max_retries": 0}
               for _ in range(failed))  # fmt: skip
        await tq.submit_many(bad, chunk_size=1000)
        while True:
            counts = (await tq.statistics()).counts
            if counts["succeeded"] + counts["failed"] >= n + failed:
                return
            await asyncio.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--failed", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args()
    proc, url, workdir = spawn_server(argparse.Namespace(env=args.env, profile=None))
    try:
        started = time.perf_counter()
        asyncio.run(seed(url, args.n, args.failed))
        print(
            json.dumps(
                {"seeded": args.n + args.failed, "seconds": round(time.perf_counter() - started)}
            )
        )
        with httpx.Client(base_url=url, timeout=60, headers={"Accept": "application/json"}) as http:
            for name, path in QUERIES.items():
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    resp = http.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert resp.status_code == 200, (path, resp.text[:200])
                times.sort()
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                figures = {"p50_ms": round(statistics.median(times), 1), "p99_ms": round(p99, 1)}
                print(json.dumps({"query": name, **figures, "max_ms": round(times[-1], 1)}))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

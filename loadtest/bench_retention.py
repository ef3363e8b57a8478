"""Retention's cost to a running workload, side by side: the end-to-end benchmark runs while
the retention service deletes N earlier tasks (on: TIERQ_RETENTION_FAILED_S=1) against the
same with retention off (0: kept).

    cd loadtest && ../.venv/bin/python bench_retention.py --pairs 2 --n 100000

Each run: a fresh embedded server; N tasks that fail at once (the backlog to delete: failed,
so the measured run's count of succeeded tasks is not touched by the deletes); a wait until
the retention service's next pass is due (it runs at start, then every 60 s); N noop tasks
end to end, measured (bench_e2e.py), while that pass deletes the failed ones in batches of
1,000. Printed: the measured run's rate, the failed tasks left after it, the on/off ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time

import aiohttp
from bench_e2e import counts, run, spawn_server, wait_ready

# The retention pass after the one at start-up (engine/retention.py: INTERVAL_S).
NEXT_PASS_S = 60.0


FAILING = {"type": "dummy", "payload": {"fail_always": True}, "max_retries": 0}


async def failed_backlog(url: str, n: int, batch: int) -> None:
    """N tasks that fail at their first attempt; returns once all are recorded failed."""
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, url)
        base = (await counts(session, url))["failed"]
        for done in range(0, n, batch):
            body = [FAILING] * min(batch, n - done)
            async with session.post(f"{url}/api/v1/tasks/batch", json=body) as resp:
                assert resp.status == 201, await resp.text()
        while (await counts(session, url))["failed"] - base < n:
            await asyncio.sleep(0.2)


async def failed_left(url: str) -> int:
    async with aiohttp.ClientSession() as session:
        return (await counts(session, url))["failed"]


def one_run(args: argparse.Namespace, on: bool) -> dict[str, float]:
    run_args = argparse.Namespace(**vars(args))
    run_args.env = [f"TIERQ_RETENTION_FAILED_S={1 if on else 0}"]
    run_args.profile = None
    run_args.priority_mix = False
    proc, url, workdir = spawn_server(run_args)
    started = time.monotonic()
    try:
        asyncio.run(failed_backlog(url, args.n, args.batch))
        time.sleep(max(0.0, started + NEXT_PASS_S - time.monotonic()))
        measured = asyncio.run(run(run_args, url))
        left = asyncio.run(failed_left(url))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"e2e_rate": float(measured["total_rate"]), "failed_left": left}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    ratios = []
    for pair in range(args.pairs):
        off = one_run(args, on=False)
        on = one_run(args, on=True)
        ratios.append(on["e2e_rate"] / off["e2e_rate"])
        print(json.dumps({"pair": pair, "off": off, "on": on, "on_over_off": round(ratios[-1], 3)}))
    print(json.dumps({"mean_on_over_off": round(sum(ratios) / len(ratios), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

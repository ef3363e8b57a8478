"""Access control's cost, side by side in one run: the same server with access control off
(no key exists, so loopback callers need no credential; no rate limit; TIERQ_AUDIT=false)
against on (an API key on every request, rate limits on every route class set high enough
never to refuse, the audit log of every change).

    .venv/bin/python loadtest/bench_access.py --pairs 2                  # embedded
    .venv/bin/python loadtest/bench_access.py --pairs 2 --distributed 1  # PostgreSQL + Redis

Each pair runs "off" then "on", each on a fresh server: the end-to-end batch benchmark
(bench_e2e.py: N tasks in batches of 1,000) and single-task POSTs from C closed-loop clients
for S seconds. Printed: each run's figures and the on/off ratio of every pair.
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
from pathlib import Path

import aiohttp
import orjson
from bench_e2e import run, spawn_server, start_cluster, stop_cluster, wait_ready

HIGH = "1000000"  # a limit that never refuses: every request still passes the limiter
ACCESS_ON = [
    f"TIERQ_RATE_{kind}_{what}={HIGH}"
    for kind in ("SUBMIT", "READ", "ADMIN")
    for what in ("PER_S", "BURST")
]


async def make_key(url: str) -> str:
    """The first admin key, made over the API by the loopback operator (no key exists yet)."""
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, url)
        async with session.post(
            f"{url}/api/v1/keys", json={"name": "bench", "role": "admin"}
        ) as resp:
            assert resp.status == 201, await resp.text()
            secret: str = (await resp.json())["secret"]
        # Credentials are required from now on (this replica knows at once; others within
        # auth_cache_s): wait until an anonymous call is refused.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            async with session.get(f"{url}/api/v1/tasks") as resp:
                if resp.status == 401:
                    return secret
            await asyncio.sleep(0.1)
    raise RuntimeError("credentials never became required")


async def single_posts(url: str, key: str | None, clients: int, seconds: float) -> float:
    """Single-task submissions per second from ``clients`` closed-loop clients."""
    body = orjson.dumps({"type": "noop", "payload": {"n": 1}})
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    done = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop = time.monotonic() + seconds

        async def client() -> None:
            nonlocal done
            while time.monotonic() < stop:
                async with session.post(f"{url}/api/v1/tasks", data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 201:
                        raise RuntimeError(f"{r.status}: {await r.text()}")
                    done += 1

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.monotonic() - started)


ACCESS_OFF = ["TIERQ_AUDIT=false"]


def one_run(args: argparse.Namespace, on: bool) -> dict[str, float]:
    run_args = argparse.Namespace(**vars(args))
    run_args.env = list(args.env) + (ACCESS_ON if on else ACCESS_OFF)
    proc = workdir = cluster_env = None
    if args.distributed:
        url, cluster_env = start_cluster(run_args)
    else:
        proc, url, workdir = spawn_server(run_args)
    try:
        key = asyncio.run(make_key(url)) if on else None
        run_args.api_key = key
        run_args.priority_mix = False
        e2e = asyncio.run(run(run_args, url))
        posts = asyncio.run(single_posts(url, key, args.clients, args.seconds))
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
    return {"e2e_rate": float(e2e["total_rate"]), "single_post_rate": round(posts, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--clients", type=int, default=32, help="single-POST clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="single-POST run length")
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--distributed", type=int, default=0, metavar="N")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", help="write the runs as JSON here")
    args = parser.parse_args()
    args.profile = None
    runs: list[dict[str, object]] = []
    for pair in range(args.pairs):
        off = one_run(args, on=False)
        on = one_run(args, on=True)
        ratios = {k: round(on[k] / off[k], 3) for k in off}
        runs.append({"pair": pair, "off": off, "on": on, "on_over_off": ratios})
        print(json.dumps(runs[-1]), flush=True)
    summary = {
        k: round(statistics.fmean(r["on_over_off"][k] for r in runs), 3)  # type: ignore[index]
        for k in ("e2e_rate", "single_post_rate")
    }
    mode = f"distributed x{args.distributed}" if args.distributed else "embedded"
    print(json.dumps({"mode": mode, "mean_on_over_off": summary}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"mode": mode, "runs": runs, "mean": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Webhook fan-out: N noop tasks, each with a webhook to a local receiver (or one subscription
for every success with --subscription), through a spawned server; the receiver (in this
process) records when each delivery arrives.

    .venv/bin/python loadtest/bench_webhooks.py --n 10000
    .venv/bin/python loadtest/bench_webhooks.py --n 10000 --distributed 1
    .venv/bin/python loadtest/bench_webhooks.py --n 10000 --rate 1000 --batch 100

Figures printed: deliveries per second (first to last arrival), and the task-finish ->
delivery latency (arrival time minus the task's finished_at from the delivered body) p50 /
p99 / max; duplicates (deliveries of one task beyond the first) and deliveries missing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import free_port, pct, spawn_server, start_cluster, stop_cluster, wait_ready


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        # (arrived, body): parsed after the run, so the receiver stays cheap while it counts.
        self.raw: list[tuple[float, bytes]] = []
        self.done = asyncio.Event()
        self.expected = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.raw.append((time.time(), body))
        if len(self.raw) >= self.expected:
            self.done.set()
        return web.Response(status=204)

    def arrivals(self) -> list[tuple[float, float, str]]:
        """(arrived, task finished_at, task id) of every delivery."""
        out = []
        for arrived, body in self.raw:
            data = orjson.loads(body)["data"]
            out.append((arrived, parse_ts(data["finished_at"]), data["task_id"]))
        return out

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024).start()
        return runner


async def run(args: argparse.Namespace, url: str, receiver: Receiver) -> dict[str, object]:
    hook = f"http://127.0.0.1:{receiver.port}/hook"
    receiver.expected = args.n
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_ready(session, url)
        if args.subscription:
            async with session.post(
                f"{url}/api/v1/webhooks", json={"url": hook, "events": ["succeeded"]}
            ) as r:
                assert r.status == 201, await r.text()
        task: dict[str, object] = {"type": "noop"}
        if not args.subscription:
            task["notify"] = {"webhook": {"url": hook, "events": ["succeeded"]}}
        body = orjson.dumps([task] * args.batch)
        t0 = time.time()
        for i in range(args.n // args.batch):
            if args.rate:  # paced: batch i leaves at its time on a steady schedule
                delay = t0 + i * args.batch / args.rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            async with session.post(
                f"{url}/api/v1/tasks/batch", data=body, headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 201, await r.text()
        submitted = time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.done.wait(), args.max_seconds)
        end = time.time()
    arrivals = receiver.arrivals()
    latencies = [a - f for a, f, _ in arrivals]
    first = min((a for a, _, _ in arrivals), default=t0)
    last = max((a for a, _, _ in arrivals), default=end)
    ids = [i for _, _, i in arrivals]
    return {
        "n": args.n,
        "mode": f"distributed x{args.distributed}" if args.distributed else "embedded",
        "via": "subscription" if args.subscription else "per-task notify",
        "rate": args.rate or "as fast as accepted",
        "submit_seconds": round(submitted - t0, 3),
        "delivered": len(set(ids)),
        "duplicates": len(ids) - len(set(ids)),
        "missing": args.n - len(set(ids)),
        "deliveries_per_s": round(len(ids) / max(1e-9, last - first)),
        "end_to_end_per_s": round(len(ids) / max(1e-9, last - t0)),
        "finish_to_delivery_p50_ms": round(pct(latencies, 50) * 1000, 1),
        "finish_to_delivery_p99_ms": round(pct(latencies, 99) * 1000, 1),
        "finish_to_delivery_max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--subscription", action="store_true")
    parser.add_argument("--rate", type=float, default=0, help="submit at this many tasks/s")
    parser.add_argument("--distributed", type=int, default=0, metavar="N")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--profile", help="run the spawned server under py-spy, write here")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    args.env = [
        f"TIERQ_WEBHOOK_SECRET={secret}",
        "TIERQ_HTTP_ALLOW_PRIVATE=127.0.0.1",
        *args.env,
    ]

    async def go() -> dict[str, object]:
        receiver = Receiver()
        runner = await receiver.start()
        proc = cluster_env = None
        try:
            if args.distributed:
                url, cluster_env = start_cluster(args)
            else:
                proc, url, _ = spawn_server(args)
            return await run(args, url, receiver)
        finally:
            if cluster_env is not None:
                stop_cluster(cluster_env)
            if proc is not None:
                proc.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            await runner.cleanup()

    result = asyncio.run(go())
    print(json.dumps(result, indent=2))
    return 0 if result["missing"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

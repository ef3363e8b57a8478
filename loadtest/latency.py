"""Single-task submit latency at a fixed request rate (open loop).

    .venv/bin/python loadtest/latency.py --url http://127.0.0.1:8081 --rate 2000 --seconds 60

Requests are sent on a fixed schedule whatever the server does, and each latency is measured
from the moment the request was DUE, not from when it was actually sent: a server stall shows
up as latency instead of silently lowering the offered load (no coordinated omission). Prints
p50/p90/p99/p99.9/max, error counts and the achieved rate; --out writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import orjson

BODY = orjson.dumps({"type": "noop", "payload": {"source": "latency"}})


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100.0 * (len(values) - 1))))
    return values[k]


async def run(url: str, rate: float, seconds: float, connections: int) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    inflight = 0
    max_inflight = 0
    sem = asyncio.Semaphore(connections * 4)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def one(due: float) -> None:
            nonlocal inflight, max_inflight
            async with sem:
                inflight += 1
                max_inflight = max(max_inflight, inflight)
                try:
                    async with session.post(
                        f"{url}/api/v1/tasks",
                        data=BODY,
                        headers={"Content-Type": "application/json"},
                    ) as r:
                        await r.read()
                        if r.status != 201:
                            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
                            return
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return
                finally:
                    inflight -= 1
                latencies.append(time.perf_counter() - due)

        # Warm the connection pool so the first second is not connection set-up.
        await asyncio.gather(*(one(time.perf_counter()) for _ in range(connections)))
        latencies.clear()
        interval = 1.0 / rate
        start = time.perf_counter()
        total = int(rate * seconds)
        pending: set[asyncio.Task[None]] = set()
        for i in range(total):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - start
    latencies.sort()
    ms = [v * 1000 for v in latencies]
    return {
        "offered_rate": rate,
        "seconds": seconds,
        "requests": total,
        "ok": len(latencies),
        "errors": errors,
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(ms, 50), 2),
        "p90_ms": round(pct(ms, 90), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "p999_ms": round(pct(ms, 99.9), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "max_inflight": max_inflight,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, args.rate, args.seconds, args.connections))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

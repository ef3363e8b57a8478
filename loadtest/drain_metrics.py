"""A backlog drain seen from the server's own metrics, against a server you started (so it
can run under py-spy or loadtest/gc_pauses.py).

    .venv/bin/python -m tierq serve --port 18091 &      # distributed: TIERQ_DATABASE_URL etc.
    .venv/bin/python loadtest/drain_metrics.py --url http://127.0.0.1:18091 --n 200000

Submits N noop tasks in batches of 1,000 that all fall due --due-after seconds after the
start, then, while they drain, probes list / statistics / single submit in a loop. Prints
the drain rate, probe percentiles, and what /metrics says changed during the drain: mean
time and batch size per store operation, and the event loop lag histogram.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import orjson

WATCHED = ("tierq_store_operation_seconds", "tierq_store_batch_size", "tierq_http_request")


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or "_created" in line:
            continue
        if line.startswith("tierq_event_loop_lag") or (
            line.startswith(WATCHED) and ("_sum{" in line or "_count{" in line)
        ):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def report(before: dict[str, float], after: dict[str, float]) -> None:
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in after.items():
        delta = value - before.get(key, 0.0)
        if key.startswith("tierq_event_loop_lag"):
            print(f"{key:70s} {delta:10.3f}")
            continue
        name, labels = key.split("{", 1)
        base, kind = name.rsplit("_", 1)
        rows.setdefault((base, labels.rstrip("}")), {})[kind] = delta
    for (base, labels), v in sorted(rows.items()):
        if v.get("count"):
            mean = v["sum"] / v["count"]
            shown = f"{1000 * mean:9.2f} ms" if base.endswith("seconds") else f"{mean:9.1f}"
            print(f"{base[6:]:32s} {labels[:55]:55s} n={v['count']:7.0f} mean={shown}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--due-after", type=float, default=25.0)
    args = parser.parse_args()
    url = args.url
    json_headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        started = time.time()
        due = started + args.due_after
        run_at = datetime.fromtimestamp(due, UTC).isoformat()
        body = orjson.dumps([{"type": "noop", "run_at": run_at, "priority": "LOW"}] * 1000)
        batches = list(range(args.n // 1000))

        async def submitter() -> None:
            while batches:
                batches.pop()
                async with session.post(
                    f"{url}/api/v1/tasks/batch", data=body, headers=json_headers
                ) as r:
                    if r.status != 201:
                        raise RuntimeError(f"submit: {r.status} {await r.text()}")

        await asyncio.gather(submitter(), submitter())
        print(f"submitted {args.n} in {time.time() - started:.1f}s", flush=True)
        await asyncio.sleep(max(0.0, due - time.time()))
        before = await scrape(session, url)
        probes: dict[str, list[float]] = {"list": [], "statistics": [], "submit": []}
        single = orjson.dumps({"type": "noop", "priority": "HIGH"})
        drain_started = time.time()
        while True:
            for name, method, path, data in (
                ("list", "GET", "/api/v1/tasks?size=50", None),
                ("statistics", "GET", "/api/v1/tasks/statistics", None),
                ("submit", "POST", "/api/v1/tasks", single),
            ):
                t = time.perf_counter()
                async with session.request(
                    method, url + path, data=data, headers=json_headers
                ) as r:
                    answer = await r.read()
                probes[name].append((time.perf_counter() - t) * 1000)
                if name == "statistics":
                    counts = orjson.loads(answer)["counts"]
            live = counts["scheduled"] + counts["queued"] + counts["running"]
            if live == 0 and counts["succeeded"] >= args.n:
                break
            await asyncio.sleep(0.25)
        took = time.time() - drain_started
        report(before, await scrape(session, url))
        print(f"drained {args.n} in {took:.1f}s = {args.n / took:.0f} tasks/s")
        for name, values in probes.items():
            values.sort()

            def at(q: float, v: list[float] = values) -> float:
                return v[min(len(v) - 1, int(len(v) * q))]

            print(
                f"{name:10s} n={len(values)} p50 {at(0.5):.1f} p90 {at(0.9):.1f} "
                f"p99 {at(0.99):.1f} max {values[-1]:.1f} ms"
            )


if __name__ == "__main__":
    asyncio.run(main())

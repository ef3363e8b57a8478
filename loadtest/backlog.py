"""Huge backlog: memory stays bounded, the API stays responsive, the drain keeps its rate.

    .venv/bin/python loadtest/backlog.py --n 2000000                  # embedded (SQLite)
    .venv/bin/python loadtest/backlog.py --n 2000000 --distributed 1  # PostgreSQL + Redis

Submits N noop tasks that all become due at one instant after the submission ends (run_at =
start + --due-after seconds), so the whole backlog waits in the record/dispatch tier. Meanwhile
a probe samples the server's RSS (/proc) and the latency of list, statistics and single
submits. When the tasks fall due, the drain rate is measured until all succeeded. Prints the
figures; --out writes JSON and a PNG (RSS and probe latencies over time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import pct, spawn_server, start_cluster, stop_cluster, wait_ready


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def server_pids(proc_pid: int | None, env: dict[str, str] | None) -> list[int]:
    if proc_pid is not None:
        return [proc_pid]
    assert env is not None
    run_dir = Path(env["CLUSTER_DIR"]) / "run"
    return [int(p.read_text()) for p in sorted(run_dir.glob("replica-*.pid"))]


async def timed_get(session: aiohttp.ClientSession, url: str) -> float:
    t = time.perf_counter()
    async with session.get(url) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}: {r.status}")
    return (time.perf_counter() - t) * 1000


async def run(args: argparse.Namespace, url: str, pids: list[int]) -> dict[str, object]:
    samples: list[dict[str, float]] = []
    probe_ms: dict[str, list[float]] = {"list": [], "statistics": [], "submit": []}
    stop_probe = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await wait_ready(session, url)
        t0 = time.time()
        due = t0 + args.due_after
        run_at = datetime.fromtimestamp(due, UTC).isoformat()
        body = orjson.dumps([{"type": "noop", "run_at": run_at, "priority": "LOW"}] * args.batch)
        single = orjson.dumps({"type": "noop", "priority": "HIGH"})

        async def probe() -> None:
            while not stop_probe.is_set():
                probe_ms["list"].append(await timed_get(session, f"{url}/api/v1/tasks?size=50"))
                probe_ms["list"].append(
                    await timed_get(session, f"{url}/api/v1/tasks?status=scheduled&size=50")
                )
                probe_ms["statistics"].append(
                    await timed_get(session, f"{url}/api/v1/tasks/statistics")
                )
                t = time.perf_counter()
                async with session.post(
                    f"{url}/api/v1/tasks", data=single, headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()
                probe_ms["submit"].append((time.perf_counter() - t) * 1000)
                samples.append({"t": time.time() - t0, "rss_mb": sum(rss_mb(p) for p in pids)})
                await asyncio.sleep(0.25)

        async def submitter(queue: asyncio.Queue[int]) -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                for attempt in range(100):
                    async with session.post(
                        f"{url}/api/v1/tasks/batch",
                        data=body,
                        headers={"Content-Type": "application/json"},
                    ) as r:
                        if r.status == 201:
                            await r.read()
                            break
                        if r.status == 503:
                            await asyncio.sleep(0.1 * (attempt + 1))
                            continue
                        raise RuntimeError(f"submit: {r.status} {await r.text()}")

        probe_task = asyncio.create_task(probe())
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(args.n // args.batch):
            queue.put_nowait(i)
        await asyncio.gather(*(submitter(queue) for _ in range(args.concurrency)))
        t_submitted = time.time()
        submit_probe = {k: list(v) for k, v in probe_ms.items()}
        if t_submitted > due:
            print(f"warning: submission took {t_submitted - t0:.0f}s, past --due-after", flush=True)
        total = args.n // args.batch * args.batch
        # Probe samples from the moment the backlog falls due: the drain phase.
        drain_probe_from: dict[str, int] = {}
        while True:
            if not drain_probe_from and time.time() >= due:
                drain_probe_from = {k: len(v) for k, v in probe_ms.items()}
            # The server starts empty: done when nothing is left and the backlog succeeded
            # (the probe's own HIGH submissions succeed along the way).
            async with session.get(f"{url}/api/v1/tasks/statistics") as r:
                counts = (await r.json(loads=orjson.loads))["counts"]
            now = time.time()
            live = counts["scheduled"] + counts["queued"] + counts["running"]
            if live == 0 and counts["succeeded"] >= total:
                break
            if now - t0 > args.max_seconds:
                raise RuntimeError(f"gave up: {counts}")
            await asyncio.sleep(0.25)
        t_end = time.time()
        stop_probe.set()
        await probe_task
    peak = max(s["rss_mb"] for s in samples) if samples else float("nan")

    def summary(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        return {
            "n": len(values),
            "p50_ms": round(pct(values, 50), 2),
            "p99_ms": round(pct(values, 99), 2),
            "max_ms": round(values[-1], 2) if values else 0,
        }

    return {
        "n": total,
        "submit_seconds": round(t_submitted - t0, 1),
        "submit_rate": round(total / (t_submitted - t0)),
        "drain_seconds": round(t_end - max(due, t_submitted), 1),
        "drain_rate": round(total / max(1e-9, t_end - max(due, t_submitted))),
        "peak_rss_mb": round(peak, 1),
        "probe_during_submit": {k: summary(v) for k, v in submit_probe.items()},
        "probe_during_drain": {
            k: summary(v[drain_probe_from.get(k, len(v)) :]) for k, v in probe_ms.items()
        },
        "probe_overall": {k: summary(v) for k, v in probe_ms.items()},
        "samples": samples,
    }


def plot(result: dict[str, object], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    assert isinstance(samples, list)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([s["t"] for s in samples], [s["rss_mb"] for s in samples])
    ax.axhline(300, linestyle="--", color="red", label="300 MB bound")
    ax.set_xlabel("seconds")
    ax.set_ylabel("server RSS (MB)")
    ax.set_title(f"backlog of {result['n']:,}: RSS over submission and drain")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--due-after",
        type=float,
        default=0,
        help="seconds after start when the backlog falls due (default: n/20000+15)",
    )
    parser.add_argument("--max-seconds", type=float, default=1800)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--distributed", type=int, default=0)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--out")
    args = parser.parse_args()
    if not args.due_after:
        args.due_after = args.n / 20000 + 15
    proc = None
    env = None
    workdir = None
    if args.distributed:
        url, env = start_cluster(args)
    else:
        proc, url, workdir = spawn_server(args)
    try:
        pids = server_pids(proc.pid if proc else None, env)
        result = asyncio.run(run(args, url, pids))
    finally:
        if env is not None:
            stop_cluster(env)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=120)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    result["mode"] = f"distributed x{args.distributed}" if args.distributed else "embedded"
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        plot(result, str(Path(args.out).with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

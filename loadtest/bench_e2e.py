"""End-to-end benchmark: submit N noop tasks over HTTP in batches, wait until statistics show
all of them succeeded (committed in the record tier), print rates and latencies.

    .venv/bin/python loadtest/bench_e2e.py --n 200000            # spawns an embedded server
    .venv/bin/python loadtest/bench_e2e.py --url http://127.0.0.1:8080 --n 200000

Figures printed: submit rate (tasks acknowledged per second while submitting), drain rate
(tasks finished per second from first submit to last success), total (N / wall time), and the
submit->finish latency percentiles from each task's created_at and finished_at. A JSON file
with the figures and a timeline is written next to a PNG plot (throughput over time, latency
percentiles) when --out is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(count: int) -> int:
    """A port p such that p .. p+count-1 are all free now."""
    for _ in range(200):
        base = free_port()
        if base + count >= 65535:
            continue
        try:
            for offset in range(count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no block of {count} free ports")


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100.0 * (len(values) - 1))))
    return values[k]


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/health/ready") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready after {timeout}s")


async def submitter(
    session: aiohttp.ClientSession, url: str, queue: asyncio.Queue[bytes | None], acked: list[int]
) -> None:
    while True:
        body = await queue.get()
        if body is None:
            return
        for attempt in range(50):
            async with session.post(
                f"{url}/api/v1/tasks/batch", data=body, headers={"Content-Type": "application/json"}
            ) as r:
                if r.status == 201:
                    data = await r.json(loads=orjson.loads)
                    acked.append(data["count"])
                    break
                if r.status == 503:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                raise RuntimeError(f"submit failed: {r.status} {await r.text()}")


async def counts(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with session.get(f"{url}/api/v1/tasks/statistics") as r:
        data = await r.json(loads=orjson.loads)
        return data["counts"]


async def collect_latencies(
    session: aiohttp.ClientSession, url: str, since: float, limit: int
) -> list[float]:
    """submit->finish of every task created in this run (created_at >= since)."""
    out: list[float] = []
    after = None
    while len(out) < limit:
        q = f"{url}/api/v1/tasks?status=succeeded&sort=created_at,desc&size=1000"
        if after:
            q += f"&after={after}"
        async with session.get(q) as r:
            page = await r.json(loads=orjson.loads)
        stop = False
        for item in page["items"]:
            created = parse_ts(item["created_at"])
            if created < since - 1:
                stop = True
                break
            out.append(parse_ts(item["finished_at"]) - created)
        if stop or not page["has_more"]:
            break
        after = page["next_after"]
    return out


async def run(args: argparse.Namespace, url: str) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    timeout = aiohttp.ClientTimeout(total=120)
    key = getattr(args, "api_key", None)
    headers = {"X-API-Key": key} if key else None
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        await wait_ready(session, url)
        base = await counts(session, url)
        base_done = base["succeeded"]
        task = {"type": "noop", "payload": {"n": 1}}
        queues = getattr(args, "queues", 1)
        if queues > 1:
            bodies_src = [[{**task, "queue": f"q{i % queues}"} for i in range(args.batch)]]
        elif args.priority_mix:
            bodies_src = [
                [{**task, "priority": ("HIGH", "MEDIUM", "LOW")[i % 3]} for i in range(args.batch)]
            ]
        else:
            bodies_src = [[task] * args.batch]
        body = orjson.dumps(bodies_src[0])
        n_batches = args.n // args.batch
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for _ in range(n_batches):
            queue.put_nowait(body)
        for _ in range(args.concurrency):
            queue.put_nowait(None)
        acked: list[int] = []
        timeline: list[tuple[float, int]] = []
        t0 = time.time()
        workers = [
            asyncio.create_task(submitter(session, url, queue, acked))
            for _ in range(args.concurrency)
        ]
        total = n_batches * args.batch
        submit_done = None
        done = 0
        while True:
            await asyncio.sleep(0.2)
            c = await counts(session, url)
            done = c["succeeded"] - base_done
            timeline.append((time.time() - t0, done))
            if submit_done is None and all(w.done() for w in workers):
                for w in workers:
                    w.result()  # raise submit errors
                submit_done = time.time()
            if done >= total:
                break
            if time.time() - t0 > args.max_seconds:
                raise RuntimeError(f"gave up after {args.max_seconds}s: {done}/{total} done")
        t_end = time.time()
        assert submit_done is not None
        lat = await collect_latencies(session, url, t0, total)
    wall = t_end - t0
    result = {
        "n": total,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "submit_seconds": round(submit_done - t0, 3),
        "submit_rate": round(total / (submit_done - t0)),
        "drain_rate": round(total / wall),
        "total_seconds": round(wall, 3),
        "total_rate": round(total / wall),
        "latency_p50_ms": round(pct(lat, 50) * 1000, 1),
        "latency_p99_ms": round(pct(lat, 99) * 1000, 1),
        "latency_mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
        "latency_samples": len(lat),
        "timeline": timeline,
    }
    return result


def spawn_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str, str]:
    workdir = tempfile.mkdtemp(prefix="tierq-bench-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
    env.update(
        {
            "TIERQ_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "TIERQ_PORT": str(port),
            "TIERQ_LOG_LEVEL": "WARNING",
        }
    )
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    cmd = [sys.executable, "-m", "tierq", "serve"]
    if args.profile:
        spy = str(Path(sys.executable).with_name("py-spy"))
        fmt = "raw" if args.profile.endswith(".txt") else "flamegraph"
        cmd = [spy, "record", "-o", args.profile, "-f", fmt, "-r", "200", "--threads", "--", *cmd]
    proc = subprocess.Popen(cmd, env=env, cwd=workdir)
    return proc, f"http://127.0.0.1:{port}", workdir


def start_cluster(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """N replicas on PostgreSQL + Redis (a fresh schema and key prefix), one directly or
    several behind nginx, via deploy/local-cluster.sh."""
    tag = f"bench_{os.getpid()}_{int(time.time())}"
    workdir = tempfile.mkdtemp(prefix="tierq-cluster-")
    port = free_port_block(args.distributed + 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
    env.update(
        {
            "TIERQ_DATABASE_URL": args.postgres_url,
            "TIERQ_REDIS_URL": args.redis_url,
            "TIERQ_DATABASE_SCHEMA": tag,
            "TIERQ_REDIS_PREFIX": tag,
            "TIERQ_LOG_LEVEL": "WARNING",
            "CLUSTER_PORT": str(port),
            "CLUSTER_DIR": workdir,
        }
    )
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    script = str(ROOT / "deploy" / "local-cluster.sh")
    subprocess.run(
        [script, "start", str(args.distributed)], env=env, check=True, stdout=subprocess.DEVNULL
    )
    # One replica is measured directly; several go through nginx on CLUSTER_PORT.
    url = f"http://127.0.0.1:{port + 1 if args.distributed == 1 else port}"
    return url, env


def stop_cluster(env: dict[str, str]) -> None:
    script = str(ROOT / "deploy" / "local-cluster.sh")
    subprocess.run([script, "stop"], env=env, check=False, stdout=subprocess.DEVNULL)
    tag = env["TIERQ_DATABASE_SCHEMA"]
    subprocess.run(
        ["psql", env["TIERQ_DATABASE_URL"], "-qc", f"DROP SCHEMA IF EXISTS {tag} CASCADE"],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis.from_url(env["TIERQ_REDIS_URL"])
    keys = list(client.scan_iter(match=f"{tag}*", count=10_000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
    shutil.rmtree(env["CLUSTER_DIR"], ignore_errors=True)


def plot(result: dict[str, object], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = result["timeline"]
    assert isinstance(timeline, list)
    xs = [t for t, _ in timeline]
    done = [d for _, d in timeline]
    rates = [0.0] + [
        (done[i] - done[i - 1]) / max(1e-9, xs[i] - xs[i - 1]) for i in range(1, len(xs))
    ]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(xs, rates)
    a1.set_xlabel("seconds")
    a1.set_ylabel("tasks succeeded / s")
    a1.set_title(f"throughput (n={result['n']}, total {result['total_rate']}/s)")
    names = ["p50", "p99", "mean"]
    vals = [result["latency_p50_ms"], result["latency_p99_ms"], result["latency_mean_ms"]]
    a2.bar(names, [float(v) if v is not None else 0.0 for v in vals])  # type: ignore[arg-type]
    a2.set_ylabel("ms")
    a2.set_title("submit -> finish latency")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4, help="parallel batch submitters")
    parser.add_argument("--url", help="use a running server instead of spawning one")
    parser.add_argument("--api-key", help="send this X-API-Key with every request")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--priority-mix", action="store_true")
    parser.add_argument("--queues", type=int, default=1, help="spread tasks over q0..qN-1")
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--profile", help="run the spawned server under py-spy, write SVG here")
    parser.add_argument("--out", help="write JSON here (and a PNG beside it)")
    parser.add_argument(
        "--distributed",
        type=int,
        default=0,
        metavar="N",
        help="N replicas on PostgreSQL + Redis (N > 1: behind nginx)",
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    proc = workdir = None
    cluster_env = None
    url = args.url
    if args.distributed:
        url, cluster_env = start_cluster(args)
    elif not url:
        proc, url, workdir = spawn_server(args)
    try:
        result = asyncio.run(run(args, url))
        result["mode"] = f"distributed x{args.distributed}" if args.distributed else "embedded"
    finally:
        if cluster_env is not None:
            stop_cluster(cluster_env)
        if proc is not None:
            proc.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = {k: v for k, v in result.items() if k != "timeline"}
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        plot(result, str(Path(args.out).with_suffix(".png")))
        print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

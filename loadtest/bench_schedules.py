"""Schedules at scale: 100,000 active schedules (``every_seconds: 60``, starts spread over the
minute) on one embedded replica. Prints, side by side in one run:

- fire lag (task committed minus tick) p50 / p99 / max, from the tasks themselves;
- the server's CPU share and RSS while idle, without and with the schedules loaded (the
  difference is the scheduler's cost: ~1,667 ticks per second);
- end-to-end noop throughput (N tasks submitted in batches, until all succeeded) with the
  schedules firing beside it, and without (the same database, the server restarted with
  ``TIERQ_SCHEDULES=false``), plus the fire lag during that saturated run;
- how long a restart takes until the scheduler holds every schedule again.

    .venv/bin/python loadtest/bench_schedules.py --schedules 100000 --n 100000

The server is spawned here (a fresh SQLite file); figures go to stdout as JSON (and to
--out). Done tasks are counted straight from the SQLite file (read-only), since the
scheduler's own tasks also count as succeeded in the API's statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import free_port, pct, wait_ready

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def query(db: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def idle(pid: int, seconds: float) -> dict[str, float]:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    share = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    return {"cpu_share": round(share, 4), "rss_mb": round(rss_mb(pid), 1)}


async def e2e(session: aiohttp.ClientSession, url: str, db: str, n: int, queue: str) -> float:
    """Submit n noop tasks in batches of 1,000 (4 in flight); tasks per second until all of
    them succeeded."""
    body = orjson.dumps([{"type": "noop", "queue": queue}] * 1000)
    batches: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n // 1000):
        batches.put_nowait(i)

    async def submitter() -> None:
        while not batches.empty():
            batches.get_nowait()
            while True:
                async with session.post(
                    f"{url}/api/v1/tasks/batch",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as resp:
                    if resp.status == 201:
                        break
                    if resp.status not in (429, 503):
                        raise RuntimeError(f"submit: {resp.status} {await resp.text()}")
                await asyncio.sleep(0.05)

    start = time.monotonic()
    await asyncio.gather(*(submitter() for _ in range(4)))
    total = (n // 1000) * 1000
    sql = "SELECT count(*) FROM tasks WHERE queue = ? AND state = 'succeeded'"
    while query(db, sql, queue)[0][0] < total:
        await asyncio.sleep(0.2)
    return total / (time.monotonic() - start)


async def create_schedules(
    session: aiohttp.ClientSession, url: str, count: int, interval: int
) -> float:
    base = time.time() + 30
    numbers: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        numbers.put_nowait(i)

    async def creator() -> None:
        while not numbers.empty():
            i = numbers.get_nowait()
            start_at = base + interval * i / count  # spread over one interval
            body = {
                "name": f"bench-{i}",
                "every_seconds": interval,
                "start_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start_at))
                + f".{int(start_at % 1 * 1000):03d}Z",
                "catchup": "none",
                "task": {"type": "noop", "queue": "scheduled"},
            }
            async with session.post(f"{url}/api/v1/schedules", json=body) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"create: {resp.status} {await resp.text()}")

    t0 = time.monotonic()
    await asyncio.gather(*(creator() for _ in range(16)))
    return count / (time.monotonic() - t0)


def spawn(db: str, workdir: str, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
    env.update(TIERQ_DATABASE_URL=f"sqlite:///{db}", TIERQ_PORT=str(port))
    env["TIERQ_LOG_LEVEL"] = "WARNING"
    env.update(extra)
    proc = subprocess.Popen([sys.executable, "-m", "tierq", "serve"], env=env, cwd=workdir)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def lag_figures(lags: list[float]) -> dict[str, object]:
    return {
        "ticks": len(lags),
        "p50_ms": round(pct(lags, 50) * 1000, 1),
        "p99_ms": round(pct(lags, 99) * 1000, 1),
        "max_ms": round(max(lags) * 1000, 1) if lags else None,
    }


def lags_between(db: str, start: float, end: float) -> list[float]:
    sql = (
        "SELECT created_at - scheduled_for FROM tasks WHERE schedule_id IS NOT NULL "
        "AND scheduled_for BETWEEN ? AND ?"
    )
    return [float(r[0]) for r in query(db, sql, start, end)]


async def gauge(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{")
    )


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    workdir = tempfile.mkdtemp(prefix="tierq-sched-bench-")
    db = f"{workdir}/bench.db"
    out: dict[str, object] = {"schedules": args.schedules, "interval_s": args.interval}
    timeout = aiohttp.ClientTimeout(total=120)
    proc, url = spawn(db, workdir)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await wait_ready(session, url)
            # On an empty database, for reference (the fair "without" is measured at the end,
            # on the same database as "with").
            out["e2e_empty_db"] = round(await e2e(session, url, db, args.n, "bench-a"))
            out["idle_without"] = await idle(proc.pid, args.idle)
            out["create_rate"] = round(
                await create_schedules(session, url, args.schedules, args.interval)
            )
            # Past the first ticks (30 s after creation began) and one whole interval.
            await asyncio.sleep(max(0.0, 30 + args.interval - 10))
            window_start = time.time()
            out["idle_with"] = await idle(proc.pid, args.idle)
            lags = lags_between(db, window_start, time.time() - 2)
            out["fire_lag"] = {
                **lag_figures(lags),
                "ticks_expected": round(
                    args.schedules * (time.time() - 2 - window_start) / args.interval
                ),
            }
            busy_start = time.time()
            out["e2e_with"] = round(await e2e(session, url, db, args.n, "bench-b"))
            busy_end = time.time()
            await asyncio.sleep(2)  # the last ticks of the run committed
            # The same lag while the queue is saturated by the e2e run beside it.
            out["fire_lag_busy"] = lag_figures(lags_between(db, busy_start, busy_end))
        stop(proc)
        # The same database, the scheduler off: what the e2e run costs without schedules.
        proc, url = spawn(db, workdir, TIERQ_SCHEDULES="false")
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await wait_ready(session, url)
            out["e2e_without"] = round(await e2e(session, url, db, args.n, "bench-c"))
        stop(proc)
        # A restart with the scheduler on: how long until it leads with every schedule held.
        started = time.monotonic()
        proc, url = spawn(db, workdir)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await wait_ready(session, url)
            while await gauge(session, url, "tierq_schedules") < args.schedules:
                await asyncio.sleep(0.1)
            out["restart_to_all_held_s"] = round(time.monotonic() - started, 2)
        doubled = query(
            db,
            "SELECT count(*) FROM (SELECT schedule_id, scheduled_for FROM tasks "
            "WHERE schedule_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1)",
        )[0][0]
        out["doubled_ticks"] = doubled
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    without, with_ = out["idle_without"], out["idle_with"]
    assert isinstance(without, dict) and isinstance(with_, dict)
    out["scheduler_cpu_share"] = round(with_["cpu_share"] - without["cpu_share"], 4)
    out["scheduler_rss_mb"] = round(with_["rss_mb"] - without["rss_mb"], 1)
    e_without, e_with = out["e2e_without"], out["e2e_with"]
    assert isinstance(e_without, int) and isinstance(e_with, int)
    out["e2e_ratio"] = round(e_with / e_without, 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--n", type=int, default=100_000, help="tasks of each e2e run")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of each CPU sample")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

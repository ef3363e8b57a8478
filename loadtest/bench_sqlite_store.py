"""Time the embedded record store's hot path: insert_many and transition_many.

Batches of --batch tasks (default 1,000), --batches of them (default 100), under each
synchronous setting; prints microseconds per task for:

- ``insert``: unleased queued tasks; ``start``: queued -> running with an execution row;
  ``finish``: running -> succeeded, completing the execution row;
- ``noop-ins`` / ``noop-fin``: what the writer does per task in the end-to-end benchmark
  (loadtest/bench_e2e.py): an insert leased to the process, then one transition
  queued -> succeeded with ``lease_owner=None`` that starts and completes the execution row.

``--busy`` runs a second thread spinning Python code for the whole run, as a busy event loop
would: the writer thread releases the GIL around every sqlite3_step and must take it back
from that thread (see ``--switch``, which sets ``sys.setswitchinterval``).

    .venv/bin/python loadtest/bench_sqlite_store.py [--batch 1000] [--batches 100]
        [--concurrency 1] [--busy] [--switch 0.0005] [--sync FULL,NORMAL] [--repeat 1]

On a shared machine use ``--repeat 5``: the best of several runs is the least disturbed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import record_task
from tierq.model import Outcome, Task, TaskState, Transition
from tierq.storage.sqlite.store import SQLiteRecordStore

PAYLOAD = b'{"to": "someone@example.com", "subject": "hello", "n": 12345}'
COLUMNS = ("insert", "start", "finish", "noop-ins", "noop-fin")


def make_batch(size: int, now: float, owner: str | None = None) -> list[Task]:
    return [
        record_task(now, priority=i % 3 * 5, payload=PAYLOAD, lease_owner=owner)
        for i in range(size)
    ]


async def run(synchronous: str, batch: int, batches: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteRecordStore(str(Path(tmp) / "bench.db"), synchronous=synchronous)
        await store.open()
        now = time.time()
        total = batch * batches

        async def timed(calls: list[Awaitable[object]]) -> float:
            t0 = time.perf_counter()
            # `concurrency` callers at once, as the engine's flushers would be.
            for i in range(0, len(calls), concurrency):
                await asyncio.gather(*calls[i : i + concurrency])
            return (time.perf_counter() - t0) / total * 1e6

        out = {}
        work = [make_batch(batch, now) for _ in range(batches)]
        out["insert"] = await timed([store.task_insert_many(b) for b in work])
        starts = [
            [
                Transition(t.id, 1, TaskState.RUNNING, now, started_at=now, lease_owner="w")
                for t in b
            ]
            for b in work
        ]
        out["start"] = await timed([store.task_transition_many(s) for s in starts])
        ends = [
            [
                Transition(
                    t.id,
                    1,
                    TaskState.SUCCEEDED,
                    now,
                    finished_at=now,
                    result=b'{"ok": true}',
                    outcome=Outcome.SUCCEEDED,
                )
                for t in b
            ]
            for b in work
        ]
        out["finish"] = await timed([store.task_transition_many(e) for e in ends])

        leased = [make_batch(batch, now, owner="node-1") for _ in range(batches)]
        out["noop-ins"] = await timed([store.task_insert_many(b) for b in leased])
        noop = [
            [
                Transition(
                    t.id,
                    1,
                    TaskState.SUCCEEDED,
                    now,
                    started_at=now,
                    finished_at=now,
                    result=b"null",
                    lease_owner=None,
                    worker="w-1",
                    outcome=Outcome.SUCCEEDED,
                )
                for t in b
            ]
            for b in leased
        ]
        out["noop-fin"] = await timed([store.task_transition_many(n) for n in noop])
        counts = await store.task_counts()
        assert counts[TaskState.SUCCEEDED] == 2 * total, counts
        assert sum(counts.values()) == 2 * total, counts
        await store.close()
        return out


def spin(stop: threading.Event) -> None:
    """Pure-Python work that wants the GIL all the time, like a saturated event loop."""
    n = 0
    while not stop.is_set():
        for i in range(1000):
            n += i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="batches in flight at once (group commit)"
    )
    parser.add_argument("--busy", action="store_true", help="a second thread spins meanwhile")
    parser.add_argument("--switch", type=float, default=None, help="sys.setswitchinterval")
    parser.add_argument("--sync", default="FULL,NORMAL", help="synchronous settings to run")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per setting; prints the best of each column"
    )
    args = parser.parse_args()
    if args.switch is not None:
        sys.setswitchinterval(args.switch)
    stop = threading.Event()
    spinner = threading.Thread(target=spin, args=(stop,), daemon=True)
    if args.busy:
        spinner.start()
    print(
        f"{args.batches} batches of {args.batch} tasks, {args.concurrency} in flight, "
        f"busy={args.busy}, switch={sys.getswitchinterval() * 1000:g} ms; microseconds per task"
    )
    print(f"{'synchronous':<12}" + "".join(f"{c:>10}" for c in COLUMNS) + f"{'noop':>10}")
    try:
        for sync in args.sync.split(","):
            runs = [
                asyncio.run(run(sync, args.batch, args.batches, args.concurrency))
                for _ in range(args.repeat)
            ]
            r = {c: min(x[c] for x in runs) for c in COLUMNS}
            noop = r["noop-ins"] + r["noop-fin"]
            print(f"{sync:<12}" + "".join(f"{r[c]:>10.2f}" for c in COLUMNS) + f"{noop:>10.2f}")
    finally:
        stop.set()


if __name__ == "__main__":
    main()

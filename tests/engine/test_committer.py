"""Group commit: bounded groups, and never more than ``max_inflight`` transactions at once,
even when a burst of submissions is waiting (a real SQLite store underneath)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import record_task
from tierq.engine.committer import GroupCommitter
from tierq.engine.model import Task, TaskState
from tierq.storage.sqlite.store import SQLiteRecordStore


async def test_a_burst_never_runs_more_than_max_inflight_commits(tmp_path: Path) -> None:
    store = SQLiteRecordStore(str(tmp_path / "c.db"))
    await store.open()
    running = peak = 0
    sizes: list[int] = []

    async def insert_many(tasks: Sequence[Task]) -> list[str]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        sizes.append(len(tasks))
        try:
            await asyncio.sleep(0.01)  # a commit that takes a while (an fsync)
            return await store.task_insert_many(tasks)
        finally:
            running -= 1

    committer = GroupCommitter(insert_many, max_tasks=10, max_inflight=4)
    await committer.start()
    try:
        submissions = [[record_task() for _ in range(10)] for _ in range(30)]
        results = await asyncio.gather(*(committer.submit(s) for s in submissions))
        assert [r for r in results] == [[t.id for t in s] for s in submissions]
        assert peak <= 4, f"{peak} commits ran at once"
        assert max(sizes) <= 10
        counts = await store.task_counts()
        assert counts[TaskState.QUEUED] == 300
    finally:
        await committer.stop()
        await store.close()

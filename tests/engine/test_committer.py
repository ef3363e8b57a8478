"""Group commit: bounded groups, and never more than ``max_inflight`` transactions at once,
even when a burst of submissions is waiting; small submissions in their own lane, with slots
of their own (a real SQLite store underneath)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from tests.helpers import record_task, wait_for
from tierq.config import ConfigError, from_mapping
from tierq.engine.committer import SMALL_SUBMISSION, GroupCommitter
from tierq.model import Task, TaskState
from tierq.storage.sqlite.store import SQLiteRecordStore

from .conftest import EngineFactory


class RecordingInsert:
    """``insert_many`` for the committer: records each group's size and how many ran at
    once, and waits on ``hold()`` (a commit that takes a while) before the real write."""

    def __init__(self, store: SQLiteRecordStore, hold: Callable[[], Awaitable[object]]):
        self.store = store
        self.hold = hold
        self.running = self.peak = 0
        self.sizes: list[int] = []

    async def __call__(self, tasks: Sequence[Task]) -> list[str]:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.sizes.append(len(tasks))
        try:
            await self.hold()
            return await self.store.task_insert_many(tasks)
        finally:
            self.running -= 1


async def test_a_burst_never_runs_more_than_max_inflight_commits(tmp_path: Path) -> None:
    store = SQLiteRecordStore(str(tmp_path / "c.db"))
    await store.open()
    insert_many = RecordingInsert(store, lambda: asyncio.sleep(0.01))  # as if an fsync

    committer = GroupCommitter(insert_many, max_tasks=20, max_inflight=4)
    await committer.start()
    try:
        # Larger than SMALL_SUBMISSION: small ones have slots of their own.
        submissions = [[record_task() for _ in range(20)] for _ in range(15)]
        results = await asyncio.gather(*(committer.submit(s) for s in submissions))
        assert [r for r in results] == [[t.id for t in s] for s in submissions]
        assert insert_many.peak <= 4, f"{insert_many.peak} commits ran at once"
        assert max(insert_many.sizes) <= 20
        counts = await store.task_counts()
        assert counts[TaskState.QUEUED] == 300
    finally:
        await committer.stop()
        await store.close()


async def test_a_small_submission_does_not_wait_for_large_groups(tmp_path: Path) -> None:
    store = SQLiteRecordStore(str(tmp_path / "s.db"))
    await store.open()
    release = asyncio.Event()
    group_sizes: list[int] = []  # tasks per group the store was asked to insert

    async def insert_many(tasks: Sequence[Task]) -> list[str]:
        group_sizes.append(len(tasks))
        if len(tasks) > SMALL_SUBMISSION:
            await release.wait()  # large groups hang until released
        return await store.task_insert_many(tasks)

    committer = GroupCommitter(insert_many, max_tasks=100, max_inflight=2)
    await committer.start()
    try:
        large = [[record_task() for _ in range(50)] for _ in range(4)]
        pending_large = [asyncio.ensure_future(committer.submit(s)) for s in large]
        # Two large groups in flight (all slots), two waiting.
        await wait_for(lambda: len(group_sizes) == 2, timeout=5)
        single = [record_task()]
        # Its own lane and its own slot: committed while every large group still hangs.
        assert await asyncio.wait_for(committer.submit(single), 5) == [single[0].id]
        assert not any(f.done() for f in pending_large)
        # The single task was committed alone, never in a group with a large submission.
        assert 1 in group_sizes
        assert all(n == 1 or n > SMALL_SUBMISSION for n in group_sizes)
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*pending_large), 5)
        assert results == [[t.id for t in s] for s in large]
        assert (await store.task_counts())[TaskState.QUEUED] == 201
    finally:
        release.set()
        await committer.stop()
        await store.close()


@pytest.mark.parametrize("slots", [1, 2])
async def test_small_submissions_share_the_small_lanes_slots(tmp_path: Path, slots: int) -> None:
    store = SQLiteRecordStore(str(tmp_path / "m.db"))
    await store.open()
    release = asyncio.Event()
    insert_many = RecordingInsert(store, release.wait)
    group_sizes = insert_many.sizes

    committer = GroupCommitter(insert_many, max_inflight=4, max_small_inflight=slots)
    await committer.start()
    try:
        first = []
        for _ in range(slots):
            first.append(asyncio.ensure_future(committer.submit([record_task()])))
            # In flight, alone, before the next one arrives.
            await wait_for(lambda n=len(first): insert_many.running == n, timeout=5)
        singles = [[record_task()] for _ in range(31 - slots)]
        rest = [asyncio.ensure_future(committer.submit(s)) for s in singles]
        # Every one of them reached the committer (a submit waits once it has been taken in);
        # then a loop turn more for any insert the committer might wrongly start.
        await wait_for(lambda: committer.waiting == len(singles), timeout=5)
        await asyncio.sleep(0)
        # The large lane's four slots are not the small lane's: still ``slots`` at a time.
        assert insert_many.running == slots and group_sizes == [1] * slots
        release.set()
        for future in first:
            assert len(await asyncio.wait_for(future, 5)) == 1
        results = await asyncio.wait_for(asyncio.gather(*rest), 5)
        assert results == [[s[0].id] for s in singles]
        # Those that waited went together, in one transaction.
        assert group_sizes == [1] * slots + [31 - slots]
        assert insert_many.peak == slots
        assert (await store.task_counts())[TaskState.QUEUED] == 31
    finally:
        release.set()
        await committer.stop()
        await store.close()


async def test_the_engine_takes_the_small_lanes_slots_from_its_settings(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(commit_small_slots=3)
    assert engine.committer.small_slots == 3
    with pytest.raises(ConfigError, match="TIERQ_COMMIT_SMALL_SLOTS: must be at least 1"):
        from_mapping({"commit_small_slots": 0})

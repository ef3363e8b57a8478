"""The SQLite writer thread's scheduling (tierq/storage/sqlite/connection.py): urgent jobs
overtake queued background work and commit without waiting for it; neither kind starves."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tierq.storage.sqlite.connection import GROUP_BUDGET_S, ConnectionThread


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[ConnectionThread]:
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE log (n INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT)")
    thread = ConnectionThread("test-writer", conn, group_commit=True)
    thread.start()
    yield thread
    await thread.stop()


def logging_job(what: str, order: list[str]) -> Callable[[sqlite3.Connection], str]:
    def job(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO log (what) VALUES (?)", (what,))
        order.append(what)
        return what

    return job


def blocking_job(started: threading.Event, release: threading.Event) -> Callable[..., None]:
    def job(conn: sqlite3.Connection) -> None:
        started.set()
        assert release.wait(10)

    return job


async def test_urgent_job_overtakes_queued_background_jobs(writer: ConnectionThread) -> None:
    order: list[str] = []
    started, release = threading.Event(), threading.Event()
    blocker = asyncio.ensure_future(writer.submit(blocking_job(started, release)))
    assert await asyncio.to_thread(started.wait, 10)
    # Queued while the writer is busy: background jobs (the first of which blocks until
    # released), then one urgent job.
    started_bg, release_bg = threading.Event(), threading.Event()
    slow_bg = asyncio.ensure_future(writer.submit(blocking_job(started_bg, release_bg)))
    background = [
        asyncio.ensure_future(writer.submit(logging_job(f"bg{i}", order))) for i in range(2)
    ]
    urgent = asyncio.ensure_future(writer.submit(logging_job("urgent", order), urgent=True))
    await wait_for(lambda: writer.waiting() == 4, timeout=5)  # all in the writer's queue
    release.set()
    # The urgent job ran right after the job that was running, and its group committed
    # without waiting for the queued background work (still blocked here).
    assert await asyncio.wait_for(urgent, 10) == "urgent"
    assert not release_bg.is_set()
    await blocker
    release_bg.set()
    await slow_bg
    assert [await f for f in background] == ["bg0", "bg1"]
    assert order == ["urgent", "bg0", "bg1"]


def test_urgent_time_is_repaid_to_waiting_background_jobs(tmp_path: Path) -> None:
    # The group policy on its own, step by step (no thread started): which job the open
    # group takes next, or None to commit.
    conn = sqlite3.connect(tmp_path / "p.db", check_same_thread=False)
    thread = ConnectionThread("policy", conn, group_commit=True)
    loop = asyncio.new_event_loop()
    try:

        def put(name: str, urgent: bool) -> None:
            job = logging_job(name, [])
            job.__name__ = name
            thread._jobs.put((job, loop.create_future(), loop, urgent))

        def take(now: float, urgent_ran: bool, background_ran: int) -> str | None:
            item = thread._next_for_group(now, urgent_ran, background_ran)
            return None if item is None else item[0].__name__

        for name in ("bg1", "bg2", "bg3"):
            put(name, False)
        put("u1", True)
        put("u2", True)
        t = time.monotonic()
        # Group 1: the urgent jobs overtake, then commit at once although background waits.
        assert take(t, False, 0) == "u1"
        assert take(t, True, 0) == "u2"
        assert take(t, True, 0) is None
        # They took writer time while background work waited (``_run_group`` adds it up):
        # the next group repays it first, even with more urgent work waiting.
        thread._background_debt = 0.03
        put("u3", True)
        assert take(t, False, 0) == "bg1"
        thread._background_debt = 0.0  # bg1 took longer than the debt
        assert take(t, False, 1) is None  # repaid: commit, the waiting client is next
        assert take(t, False, 0) == "u3"
        assert take(t, True, 0) is None
        # Nothing urgent and nothing owed: background jobs fill a group up to its budget.
        assert take(t, False, 0) == "bg2"
        put("bg4", False)
        assert take(t - GROUP_BUDGET_S, False, 1) is None
        assert take(time.monotonic(), False, 0) == "bg3"
        assert take(time.monotonic(), False, 1) == "bg4"
        assert take(time.monotonic(), False, 2) is None
        # A debt with no background work waiting holds up nobody.
        thread._background_debt = 0.1
        put("u4", True)
        assert take(time.monotonic(), False, 0) == "u4"
    finally:
        loop.close()
        conn.close()


async def test_heavy_urgent_work_leaves_background_its_share(writer: ConnectionThread) -> None:
    # Urgent jobs of 20 ms queued faster than the writer runs them: strict priority would
    # run no background job until they stop; repaying their time lets background through.
    def slow_urgent(conn: sqlite3.Connection) -> None:
        time.sleep(0.02)

    order: list[str] = []
    urgent = [asyncio.ensure_future(writer.submit(slow_urgent, urgent=True)) for _ in range(30)]
    background = [
        asyncio.ensure_future(writer.submit(logging_job(f"bg{i}", order))) for i in range(5)
    ]
    await asyncio.wait_for(asyncio.gather(*background), 10)
    assert order == [f"bg{i}" for i in range(5)]
    pending_urgent = sum(not f.done() for f in urgent)
    assert pending_urgent > 10  # background finished long before the urgent queue emptied
    await asyncio.gather(*urgent)


async def test_a_failing_job_fails_alone_in_a_mixed_group(writer: ConnectionThread) -> None:
    order: list[str] = []
    started, release = threading.Event(), threading.Event()
    blocker = asyncio.ensure_future(writer.submit(blocking_job(started, release)))
    assert await asyncio.to_thread(started.wait, 10)

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO log (what) VALUES ('failing')")
        raise sqlite3.IntegrityError("refused")

    a = asyncio.ensure_future(writer.submit(logging_job("a", order), urgent=True))
    bad = asyncio.ensure_future(writer.submit(failing, urgent=True))
    b = asyncio.ensure_future(writer.submit(logging_job("b", order)))
    await wait_for(lambda: writer.waiting() == 3, timeout=5)
    release.set()
    assert await a == "a"
    with pytest.raises(sqlite3.IntegrityError):
        await bad
    assert await b == "b"
    await blocker
    rows = await writer.submit(lambda conn: [r[0] for r in conn.execute("SELECT what FROM log")])
    assert rows == ["a", "b"]  # the failing job's insert was rolled back, the others kept


async def test_small_urgent_jobs_go_before_larger_ones(writer: ConnectionThread) -> None:
    order: list[str] = []
    started, release = threading.Event(), threading.Event()
    blocker = asyncio.ensure_future(writer.submit(blocking_job(started, release)))
    assert await asyncio.to_thread(started.wait, 10)
    large = [
        asyncio.ensure_future(writer.submit(logging_job(f"large{i}", order), urgent=True))
        for i in range(2)
    ]
    small = asyncio.ensure_future(
        writer.submit(logging_job("small", order), urgent=True, small=True)
    )
    await wait_for(lambda: writer.waiting() == 3, timeout=5)
    release.set()
    await asyncio.gather(blocker, small, *large)
    assert order == ["small", "large0", "large1"]

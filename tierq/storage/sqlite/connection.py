"""Connection threads: one writer with group commit, one reader.

sqlite3 calls block, so each connection lives on its own thread and the event loop talks to
it through a queue of jobs (plain functions taking the connection). The writer runs the jobs
queued when it wakes in ONE transaction, then commits once: durability costs one fsync per
group, not one per caller. Results go back with ``loop.call_soon_threadsafe``, one call per
loop per group.

Jobs are urgent (a client waits on them: submissions, cancels) or background (the drain's
claims and flushes, which keep the writer busy for as long as a backlog lasts); small urgent
jobs (a few rows) go before larger ones. Urgent jobs overtake waiting background jobs, and a
group that ran one commits as soon as no other urgent job waits, so a single submission
waits for about one job, not for the queue behind it (behind FIFO groups of claims and
10,000-row flushes it waited for all of them while a backlog drained). So that
heavy submission cannot starve the drain, the writer time urgent jobs take is owed to the
background (up to ``MAX_BACKGROUND_DEBT_S``): the next groups run background jobs first
until it is repaid, which splits a saturated writer about evenly, as FIFO did. Otherwise
background jobs fill a group only while no urgent job waits (up to ``GROUP_BUDGET_S``). A
group holds urgent jobs or background jobs, never both, so no client's commit waits for
background work.

A failing job fails only its own future: the group is rolled back and replayed without it.
Jobs are therefore pure functions of the connection (no effects outside the database; they
may run more than once). That replaces a SAVEPOINT per job, which doubled the cost of every
write: inside a savepoint SQLite copies each page a statement first touches to a
sub-journal. A job may also raise ``Replay`` to be re-run, in a replay of the group, as a
different function (the insert job does on a duplicate id, to count inserted rows exactly).

What must stay true: a future resolves only after its job's transaction committed (or failed
for good), so a caller that awaited a write sees it in every later read.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from tierq.storage.base import StoreUnavailable
from tierq.storage.sqlite.sqlfiles import load_sections

log = logging.getLogger("tierq.storage.sqlite")

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
# (job, future, loop, lane); None is the stop sentinel.
_Item = tuple[Job, "asyncio.Future[Any]", asyncio.AbstractEventLoop, int]
BACKGROUND, URGENT, URGENT_SMALL = 0, 1, 2

_STOP = None
_TX = load_sections("transaction")
# How long a group keeps adding background jobs while nothing urgent waits: long enough to
# share one commit among several jobs, short next to a client's patience.
GROUP_BUDGET_S = 0.05
# At most this much urgent writer time is owed to background jobs: what submissions took
# while no drain was running is not paid back with a long stall of later submissions.
MAX_BACKGROUND_DEBT_S = 0.2


class Replay(Exception):
    """Raised by a job: roll the group back and replay it, running ``job`` in its place."""

    def __init__(self, job: Job) -> None:
        super().__init__("replay")
        self.job = job


def _map_error(exc: BaseException) -> BaseException:
    # Locked / busy / I/O errors are transient from the caller's point of view.
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"sqlite: {exc}")
    return exc


def _resolve(batch: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Runs on the event loop: settle the futures of one group (skipping cancelled ones)."""
    for fut, result, exc in batch:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)


class ConnectionThread:
    """A thread owning one sqlite3 connection and running the jobs queued for it.

    ``group_commit`` True: the writer behaviour described in the module docstring.
    ``group_commit`` False: each job runs on its own in autocommit mode (the reader: every
    SELECT is its own consistent snapshot under WAL).
    """

    def __init__(self, name: str, conn: sqlite3.Connection, *, group_commit: bool) -> None:
        self._conn = conn
        self._group_commit = group_commit
        self._jobs: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # Jobs taken off ``_jobs`` and not run yet (the thread's own; see ``_collect``).
        self._urgent: deque[_Item] = deque()
        # Small urgent jobs (a single submission) go before large ones (a 1,000-task batch).
        self._urgent_small: deque[_Item] = deque()
        self._background: deque[_Item] = deque()
        self._stop_seen = False
        # Writer time urgent jobs took, not yet given back to background jobs.
        self._background_debt = 0.0
        self._closing = False
        self._final: Job | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def waiting(self) -> int:
        """Jobs submitted and not yet taken up by the thread (exact while it runs a job)."""
        return self._jobs.qsize()

    async def submit(
        self, job: Callable[[sqlite3.Connection], T], *, urgent: bool = False, small: bool = False
    ) -> T:
        """Run ``job``; ``urgent`` when a client waits on it (see the module docstring), and
        ``small`` too when it is quick (it then goes before larger urgent jobs)."""
        if self._closing:
            raise StoreUnavailable("sqlite store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        lane = (URGENT_SMALL if small else URGENT) if urgent else BACKGROUND
        self._jobs.put((job, fut, loop, lane))
        return await fut

    async def stop(self, final: Job | None = None) -> None:
        """Run every job queued so far, then ``final`` (best effort), then close the
        connection and end the thread."""
        if self._closing:
            return
        self._closing = True
        self._final = final
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    # ---- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                if not self._urgent and not self._urgent_small and not self._background:
                    if self._stop_seen:
                        break
                    self._file(self._jobs.get())  # wait for work
                self._collect()
                if self._group_commit:
                    self._run_group()
                else:
                    self._run_each()
            if self._final is not None:
                try:
                    self._final(self._conn)
                except sqlite3.Error as exc:
                    log.warning("sqlite: closing job failed: %s", exc)
        finally:
            self._conn.close()

    def _file(self, item: _Item | None) -> None:
        if item is None:
            self._stop_seen = True
        elif item[3] == URGENT_SMALL:
            self._urgent_small.append(item)
        elif item[3]:
            self._urgent.append(item)
        else:
            self._background.append(item)

    def _collect(self) -> None:
        """Move every job queued right now into the thread's own queues."""
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            self._file(item)

    def _next_for_group(
        self, started: float, urgent_ran: bool, background_ran: int
    ) -> _Item | None:
        """The next job of the open group, or None to commit it (rules: module docstring)."""
        self._collect()
        owed = bool(self._background) and self._background_debt > 0
        if urgent_ran:
            # Clients wait for this group's commit: only more urgent work joins, and not
            # once background work is owed time (the next group repays it first).
            return self._pop_urgent() if not owed else None
        if owed:
            return self._background.popleft()
        if background_ran:
            # Commit what ran as soon as a client waits (the next group serves it first).
            if self._urgent or self._urgent_small or not self._background:
                return None
            if time.monotonic() - started >= GROUP_BUDGET_S:
                return None
            return self._background.popleft()
        if self._urgent or self._urgent_small:
            return self._pop_urgent()
        return self._background.popleft() if self._background else None

    def _pop_urgent(self) -> _Item | None:
        if self._urgent_small:
            return self._urgent_small.popleft()
        return self._urgent.popleft() if self._urgent else None

    def _run_group(self) -> None:
        conn = self._conn
        items: list[_Item] = []
        results: list[Any] = []
        started = time.monotonic()
        urgent_ran = False
        background_ran = 0
        item = self._next_for_group(started, urgent_ran, background_ran)
        if item is None:  # only the stop sentinel was queued
            return
        # Taken before BEGIN, so a BEGIN that keeps failing fails the jobs one by one (in
        # the replay) instead of leaving them queued forever.
        try:
            conn.execute(_TX["begin"])
            while item is not None:
                items.append(item)
                began = time.monotonic()
                results.append(item[0](conn))
                took = time.monotonic() - began
                if item[3]:
                    urgent_ran = True
                    # Counted even while no background job waits: the drain's claims and
                    # flushes arrive one at a time, each after the last one's result, so
                    # the queue is often empty for a moment while they are far from done.
                    self._background_debt = min(self._background_debt + took, MAX_BACKGROUND_DEBT_S)
                else:
                    background_ran += 1
                    self._background_debt = max(0.0, self._background_debt - took)
                item = self._next_for_group(started, urgent_ran, background_ran)
            conn.execute(_TX["commit"])
        except Exception:
            # A job failed or asked for a replay, or BEGIN / COMMIT failed: roll back and
            # settle exactly these jobs the careful way.
            self._rollback()
            if item is not None and (not items or items[-1] is not item):
                items.append(item)  # BEGIN failed: the job taken for it too
            self._replay_group(items)
            return
        self._deliver([(item, result, None) for item, result in zip(items, results, strict=True)])

    def _replay_group(self, items: list[_Item]) -> None:
        """Run ``items`` again as one group until it commits: a failing job fails alone
        (it is dropped and the rest replayed), a ``Replay`` runs its replacement instead."""
        conn = self._conn
        jobs = [item[0] for item in items]
        live = list(range(len(items)))  # indexes of the jobs still in the group
        done: list[tuple[_Item, Any, BaseException | None]] = []
        # Every pass either commits or removes / replaces one job, so this ends; a replaced
        # job (Replay) must not raise Replay again.
        while live:
            results: list[Any] = []
            try:
                conn.execute(_TX["begin"])
                for pos, i in enumerate(live):
                    try:
                        results.append(jobs[i](conn))
                    except Replay as replay:
                        self._rollback()
                        jobs[i] = replay.job
                        break
                    except Exception as exc:
                        self._rollback()
                        done.append((items[i], None, _map_error(exc)))
                        del live[pos]
                        break
                else:
                    conn.execute(_TX["commit"])
                    done.extend((items[i], r, None) for i, r in zip(live, results, strict=True))
                    live = []
            except Exception as exc:  # BEGIN or COMMIT failed: nothing of the group holds
                self._rollback()
                failure = _map_error(exc)
                log.error("sqlite: group of %d writes failed: %s", len(live), exc)
                done.extend((items[i], None, failure) for i in live)
                live = []
        self._deliver(done)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute(_TX["rollback"])

    def _run_each(self) -> None:
        """Without group commit (the reader): every job queued, each on its own."""
        items = [*self._urgent_small, *self._urgent, *self._background]
        self._urgent_small.clear()
        self._urgent.clear()
        self._background.clear()
        done: list[tuple[_Item, Any, BaseException | None]] = []
        for item in items:
            try:
                done.append((item, item[0](self._conn), None))
            except Exception as exc:
                done.append((item, None, _map_error(exc)))
        self._deliver(done)

    @staticmethod
    def _deliver(done: list[tuple[_Item, Any, BaseException | None]]) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[Any], Any, BaseException | None]],
        ] = {}
        for (_, fut, loop, _urgent), result, exc in done:
            by_loop.setdefault(loop, []).append((fut, result, exc))
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, batch)
            except RuntimeError:
                # The loop closed while its job ran; nobody is waiting any more.
                log.debug("sqlite: result for a closed event loop dropped")

"""Connection threads: one writer with group commit, one reader.

sqlite3 calls block, so each connection lives on its own thread and the event loop talks to
it through a queue of jobs (plain functions taking the connection). The writer takes every
job queued when it wakes and runs them in ONE transaction, then commits once: durability
costs one fsync per group, not one per caller. Results go back with
``loop.call_soon_threadsafe``, one call per loop per group.

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
from collections.abc import Callable
from typing import Any, TypeVar

from tierq.storage.base import StoreUnavailable
from tierq.storage.sqlite.sqlfiles import load_sections

log = logging.getLogger("tierq.storage.sqlite")

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
# (job, future, loop); None is the stop sentinel.
_Item = tuple[Job, "asyncio.Future[Any]", asyncio.AbstractEventLoop]

_STOP = None
_TX = load_sections("transaction")


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
        self._closing = False
        self._final: Job | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def submit(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._closing:
            raise StoreUnavailable("sqlite store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((job, fut, loop))
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
        stop = False
        try:
            while not stop:
                first = self._jobs.get()
                items: list[_Item] = []
                if first is _STOP:
                    stop = True
                else:
                    items.append(first)
                # Everything queued right now joins this group.
                while True:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                    else:
                        items.append(nxt)
                if items:
                    if self._group_commit:
                        self._run_group(items)
                    else:
                        self._run_each(items)
            if self._final is not None:
                try:
                    self._final(self._conn)
                except sqlite3.Error as exc:
                    log.warning("sqlite: closing job failed: %s", exc)
        finally:
            self._conn.close()

    def _run_group(self, items: list[_Item]) -> None:
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

    def _run_each(self, items: list[_Item]) -> None:
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
        for (_, fut, loop), result, exc in done:
            by_loop.setdefault(loop, []).append((fut, result, exc))
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, batch)
            except RuntimeError:
                # The loop closed while its job ran; nobody is waiting any more.
                log.debug("sqlite: result for a closed event loop dropped")

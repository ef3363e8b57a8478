"""The embedded event log: a SQLite file of its own beside the record store, so appends never
wait for the record writer's lock.

One thread owns the connection (sqlite3 blocks); a published batch is one row, written in one
transaction. ``synchronous=NORMAL`` in WAL mode: a commit is not an fsync (an fsync per
batch cost a fifth of the writer's time beside the record tier's own); a process crash
loses nothing, a power cut may lose the newest events, never a task (the record file keeps
its own setting). Only this process writes the file, so the base class's in-process wake-up
serves the live stream.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tierq.model import Event
from tierq.storage.base import StoreUnavailable
from tierq.storage.eventlog import EventLog, Row, encode_batch, rows_after
from tierq.storage.sqlite.sqlfiles import load_sections

_SQL = load_sections("events")
T = TypeVar("T")


def events_path(record_path: str) -> str:
    """Where the event log of the record store at ``record_path`` lives: tierq.db ->
    tierq-events.db, beside it."""
    path = Path(record_path)
    return str(path.with_name(f"{path.stem}-events{path.suffix or '.db'}"))


class SQLiteEventLog(EventLog):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierq-events")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SQL["schema"])
            return conn

        self._conn = await self._run(connect)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        thread = self._thread
        if conn is not None and thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, conn.close)
        self._thread = None
        if thread is not None:
            thread.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            raise StoreUnavailable("event log is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite event log: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("event log is not open")
        return self._conn

    def _transaction(self, conn: sqlite3.Connection, work: Callable[[], object]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            work()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def _append(self, events: Sequence[Event]) -> None:
        conn = self._connection()
        body = encode_batch(events)
        n, at = len(events), events[-1].at

        def write() -> None:
            row = conn.execute(_SQL["seq"]).fetchone()
            last = (row[0] if row else 0) + n
            conn.execute(_SQL["append"], (last, n, at, body))
            conn.execute(_SQL["set_seq"], (last,))

        await self._run(lambda: self._transaction(conn, write))

    async def _range_after(self, after: int, limit: int) -> list[Event]:
        conn = self._connection()

        def read(start: int, count: int) -> list[Row]:
            return conn.execute(_SQL["range_after"], (start, count)).fetchall()

        return await rows_after(
            lambda start, count: self._run(functools.partial(read, start, count)), after, limit
        )

    async def _scalar(self, sql: str) -> int | None:
        conn = self._connection()
        row = await self._run(lambda: conn.execute(sql).fetchone())
        return None if row is None or row[0] is None else int(row[0])

    async def _newest(self) -> int | None:
        return await self._scalar(_SQL["seq"])

    async def _oldest(self) -> int | None:
        return await self._scalar(_SQL["oldest"])

    async def _trimmed_through(self) -> int | None:
        return await self._scalar(_SQL["trimmed_through"])

    async def _trim(self, older_than: float, max_count: int) -> None:
        conn = self._connection()

        def trim() -> None:
            row = conn.execute(_SQL["seq"]).fetchone()
            keep_after = (row[0] if row else 0) - max_count
            (through,) = conn.execute(_SQL["trim_bound"], (older_than, keep_after)).fetchone()
            if through and through > 0 and conn.execute(_SQL["trim"], (through,)).rowcount:
                conn.execute(_SQL["record_trim"], (through,))

        await self._run(lambda: self._transaction(conn, trim))

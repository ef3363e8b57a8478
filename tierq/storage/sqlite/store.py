"""The embedded record store: one SQLite file, owned by one process.

Writes go to one writer thread that group-commits everything queued at once (see
``connection.py``); reads go to a reader thread with its own connection (WAL lets it read
while the writer writes). The methods below are the primitives of ``RecordStore``; each
write primitive is a job (a plain function of the connection) run inside the writer's
transaction, so every one is atomic, and a batch is a handful of statements, never a
statement per task.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TypeVar

import orjson

from tierq.ids import id_floor
from tierq.model import (
    DependencyRelease,
    Execution,
    RecoveryReport,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
    Transition,
)
from tierq.storage import offload
from tierq.storage.base import RecordCapabilities, RecordStore, StoreDataError, StoreUnavailable
from tierq.storage.migrations import pending
from tierq.storage.sqlite import rows, writes
from tierq.storage.sqlite.connection import ConnectionThread
from tierq.storage.sqlite.sqlfiles import load, load_sections, migrations, statements

T = TypeVar("T")
log = logging.getLogger("tierq.storage.sqlite")
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_BUSY_TIMEOUT_S = 10.0
# An urgent write of at most this many rows (a single submission, a cancel) goes before
# larger urgent writes (1,000-task batches), so it waits for about one job, not for them.
SMALL_WRITE_ROWS = 16

_SQL = {
    name: load(name)
    for name in (
        "connection",
        "schema_migrations",
        "migrations_applied",
        "migration_record",
        "task_release",
        "task_release_all",
        "task_counts",
        "execution_list",
        "ping",
        "statistics_forget",
        "statistics_present",
    )
}


_COUNTS_TENANT = load_sections("task_counts_tenant")
_PURGE = load_sections("task_purge")


def _forget_statistics(path: str) -> None:
    """Drop planner statistics an earlier version left (sql/statistics_forget.sql says why),
    on a connection of its own, before any connection of the store has read them."""
    if not os.path.exists(path):
        return
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if conn.execute(_SQL["statistics_present"]).fetchone():
            conn.execute(_SQL["statistics_forget"])
    finally:
        conn.close()


class DatabaseLocked(RuntimeError):
    """Another process already owns this embedded database."""


def _acquire_lock(path: str) -> IO[bytes]:
    lock_path = f"{path}.lock"
    handle = open(lock_path, "a+b")  # noqa: SIM115 - held open until close()
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DatabaseLocked(
            f"{lock_path} is held by another process: an embedded SQLite database belongs to "
            "one process; run several replicas on PostgreSQL (distributed mode) instead"
        ) from None
    return handle


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: the connection threads issue BEGIN / COMMIT themselves.
    conn = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    for stmt in statements(_SQL["connection"].format(synchronous=synchronous)):
        conn.execute(stmt)
    return conn


class SQLiteRecordStore(RecordStore):
    # transition_batch: small, because the writer does one write at a time and a client's
    # write waits behind a whole flush.
    capabilities = RecordCapabilities(shared=False, transition_batch=1_000)

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        synchronous = synchronous.upper()
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous
        self._lock: IO[bytes] | None = None
        self._writer: ConnectionThread | None = None
        self._reader: ConnectionThread | None = None
        # Task rows (claims, pages, gets) come back in one step where this SQLite prints
        # doubles exactly (rows.prints_floats_exactly).
        self._rows_as_json = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._lock = _acquire_lock(self.path)
        try:
            await asyncio.to_thread(_forget_statistics, self.path)
            conn = _connect(self.path, self.synchronous)
            self._writer = ConnectionThread("tierq-sqlite-writer", conn, group_commit=True)
            self._writer.start()
            self.migrations_applied = tuple(await self.migrate())
            # After migrating: the reader must see the schema (and WAL mode) already there.
            reader = _connect(self.path, self.synchronous)
            self._reader = ConnectionThread("tierq-sqlite-reader", reader, group_commit=False)
            self._reader.start()
            self._rows_as_json = await self._read(rows.prints_floats_exactly)
            if not self._rows_as_json:
                log.warning(
                    "sqlite: doubles do not print exactly here; task rows are read row by row"
                )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        writer, reader, lock = self._writer, self._reader, self._lock
        self._writer = self._reader = None
        self._lock = None
        try:
            if reader is not None:
                await reader.stop()
            if writer is not None:
                await writer.stop()
        finally:
            if lock is not None:
                lock.close()  # closing the descriptor releases the flock

    async def migrate(self) -> list[int]:
        return await self._write(_migrate)

    async def _write(
        self, job: Callable[[sqlite3.Connection], T], *, urgent: bool = False, size: int = 0
    ) -> T:
        """Run a write job; ``urgent`` for writes a client is waiting on, which go first when
        they touch at most ``SMALL_WRITE_ROWS`` rows (``size``; connection.py)."""
        if self._writer is None:
            raise StoreUnavailable("sqlite store is not open")
        try:
            small = size <= SMALL_WRITE_ROWS
            return await self._writer.submit(job, urgent=urgent, small=small)
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
            # A constraint or value the database refuses: the same write can never succeed.
            raise StoreDataError(f"SQLite refused the data: {exc}") from exc

    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            raise StoreUnavailable("sqlite store is not open")
        return await self._reader.submit(job)

    # ---- write primitives --------------------------------------------------------------------

    async def _task_insert_many(self, tasks: Sequence[Task]) -> list[str]:
        return await self._write(writes.insert_job(tasks), urgent=True, size=len(tasks))

    async def _task_transition_many(self, transitions: Sequence[Transition]) -> list[str]:
        return await self._write(writes.transition_job(transitions))

    async def _task_cancel_many(self, ids: Sequence[str], now: float) -> list[str]:
        return await self._write(writes.cancel_job(ids, now), urgent=True, size=len(ids))

    async def _task_retry_many(self, ids: Sequence[str], now: float) -> list[str]:
        return await self._write(writes.retry_job(ids, now), urgent=True, size=len(ids))

    async def _task_claim(
        self, owner: str, limit: int, now: float, horizon: float, skip: Sequence[str]
    ) -> list[Task]:
        as_json = self._rows_as_json
        found = await self._write(writes.claim_job(owner, limit, now, horizon, skip, as_json))
        # Off the writer thread (and, for a large claim, off the loop too).
        return await offload.build(lambda r: _claimed_tasks(r, as_json), found)

    async def _task_release(self, owner: str, ids: Sequence[str] | None) -> int:
        sql = _SQL["task_release_all" if ids is None else "task_release"]
        args: tuple[str, ...] = (owner,) if ids is None else (owner, rows.json_list(ids))
        return await self._write(lambda conn: conn.execute(sql, args).rowcount)

    async def _task_recover(self, now: float, owners: Sequence[str] | None) -> RecoveryReport:
        return await self._write(writes.recover_job(now, owners))

    async def _task_release_dependents(
        self, finished_ids: Sequence[str], now: float
    ) -> DependencyRelease:
        return await self._write(writes.release_dependents_job(finished_ids, now))

    # ---- read primitives ---------------------------------------------------------------------

    async def _task_get_many(self, ids: Sequence[str], tenant: str | None) -> list[Task]:
        id_list = rows.json_list(ids)
        as_json = self._rows_as_json
        return await self._read(lambda conn: rows.read_tasks(conn, id_list, as_json, tenant))

    async def _task_list(self, flt: TaskFilter) -> TaskPage:
        sql, params = rows.list_query(flt)
        as_json = self._rows_as_json
        order = rows.page_order(flt)

        def job(conn: sqlite3.Connection) -> TaskPage:
            # Two steps whatever the page size (ids, then rows), not one per row: each step
            # waits for the GIL, which a busy event loop holds (see batches.py).
            (ids,) = conn.execute(sql, params).fetchone()
            found = rows.read_tasks(conn, ids, as_json)
            found.sort(key=order, reverse=flt.descending)
            return TaskPage(items=found[: flt.size], has_more=len(found) > flt.size)

        return await self._read(job)

    async def _task_counts(self, tenant: str | None) -> dict[TaskState, int]:
        def job(conn: sqlite3.Connection) -> dict[TaskState, int]:
            if tenant is None:
                (found,) = conn.execute(_SQL["task_counts"]).fetchone()
            elif tenant == "default":
                (found,) = conn.execute(_COUNTS_TENANT["default"]).fetchone()
            else:
                (found,) = conn.execute(_COUNTS_TENANT["other"], (tenant,)).fetchone()
            return {rows.state_from_text(s): n for s, n in orjson.loads(found).items()}

        return await self._read(job)

    async def _task_purge(self, cutoffs: Mapping[TaskState, float], limit: int) -> list[str]:
        def job(conn: sqlite3.Connection) -> list[str]:
            found: list[str] = []
            for state, cutoff in cutoffs.items():
                if len(found) >= limit:
                    break
                args = (rows.STATE_TEXT[state], id_floor(cutoff), cutoff, limit - len(found))
                (ids,) = conn.execute(_PURGE["victims"], args).fetchone()
                found += orjson.loads(ids)
            if found:
                doc = rows.json_list(found)
                conn.execute(_PURGE["delete"], (doc,))
                conn.execute(_PURGE["edges"], (doc,))
            return found

        # Background: a purge never goes before a client's write.
        return await self._write(job)

    async def _execution_list(self, task_id: str) -> list[Execution]:
        return await self._read(
            lambda conn: [
                rows.execution_from_row(r) for r in conn.execute(_SQL["execution_list"], (task_id,))
            ]
        )

    async def _ping(self) -> None:
        await self._read(lambda conn: conn.execute(_SQL["ping"]).fetchone())


def _claimed_tasks(found: Sequence[object], as_json: bool) -> list[Task]:
    return rows.decode_tasks(found, as_json)  # put in run order by RecordStore.task_claim


def _migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations not recorded in schema_migrations, in order, inside the
    writer's transaction: a failing migration leaves the schema as it was."""
    conn.execute(_SQL["schema_migrations"])
    done = {r[0] for r in conn.execute(_SQL["migrations_applied"])}
    applied: list[int] = []
    for migration in pending(migrations(), done):
        for stmt in statements(migration.sql):
            conn.execute(stmt)
        conn.execute(_SQL["migration_record"], (migration.version, time.time()))
        applied.append(migration.version)
    return applied


__all__ = ["DatabaseLocked", "SQLiteRecordStore"]

"""The embedded record store: one SQLite file, owned by one process.

Writes go to one writer thread that group-commits everything queued at once (see
``connection.py``); reads go to a reader thread with its own connection (WAL lets it read
while the writer writes). The methods below are the primitives of ``RecordStore``; each
write primitive is a job (a plain function of the connection) run inside the writer's
transaction, so every one is atomic, and a batch is a handful of statements, never a
statement per task.
"""

from __future__ import annotations

import fcntl
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import IO, TypeVar

from tierq.engine.model import (
    DependencyRelease,
    Execution,
    RecoveryReport,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
    Transition,
)
from tierq.storage.base import RecordCapabilities, RecordStore, StoreUnavailable
from tierq.storage.sqlite import rows
from tierq.storage.sqlite.connection import ConnectionThread, Replay
from tierq.storage.sqlite.sqlfiles import load, migrations, statements

T = TypeVar("T")
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_BUSY_TIMEOUT_S = 10.0

_SQL = {
    name: load(name)
    for name in (
        "connection",
        "schema_migrations",
        "migrations_applied",
        "migration_record",
        "task_insert",
        "dependency_insert",
        "task_ids_by_key",
        "task_transition",
        "execution_upsert",
        "task_cancel",
        "task_retry",
        "task_claim",
        "task_release",
        "task_release_all",
        "recover_executions",
        "recover_running",
        "recover_leases",
        "dependents_cancel",
        "dependents_ready",
        "task_get_many",
        "task_counts",
        "task_counts_by_type",
        "task_counts_by_queue",
        "execution_list",
        "ping",
        "optimize",
    )
}


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
    capabilities = RecordCapabilities(shared=False, listen=False, skip_locked=False)

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        synchronous = synchronous.upper()
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous
        self._lock: IO[bytes] | None = None
        self._writer: ConnectionThread | None = None
        self._reader: ConnectionThread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._lock = _acquire_lock(self.path)
        try:
            conn = _connect(self.path, self.synchronous)
            self._writer = ConnectionThread("tierq-sqlite-writer", conn, group_commit=True)
            self._writer.start()
            await self.migrate()
            # After migrating: the reader must see the schema (and WAL mode) already there.
            reader = _connect(self.path, self.synchronous)
            self._reader = ConnectionThread("tierq-sqlite-reader", reader, group_commit=False)
            self._reader.start()
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
                await writer.stop(final=lambda conn: conn.execute(_SQL["optimize"]))
        finally:
            if lock is not None:
                lock.close()  # closing the descriptor releases the flock

    async def migrate(self) -> list[int]:
        return await self._write(_migrate)

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailable("sqlite store is not open")
        return await self._writer.submit(job)

    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            raise StoreUnavailable("sqlite store is not open")
        return await self._reader.submit(job)

    # ---- write primitives --------------------------------------------------------------------

    async def _task_insert_many(self, tasks: Sequence[Task]) -> list[str]:
        params = [rows.task_params(t) for t in tasks]
        keys = [t.idempotency_key for t in tasks if t.idempotency_key is not None]

        def job(conn: sqlite3.Connection) -> list[str]:
            conn.executemany(_SQL["task_insert"], params)
            stored = [t.id for t in tasks]
            if keys:
                # A duplicate key (earlier batch, or earlier in this one) was skipped by
                # ON CONFLICT; the caller gets the id of the task holding the key.
                owner = dict(conn.execute(_SQL["task_ids_by_key"], (rows.json_list(keys),)))
                for i, t in enumerate(tasks):
                    if t.idempotency_key is not None:
                        stored[i] = owner[t.idempotency_key]
            edges = [
                (t.id, dep)
                for t, sid in zip(tasks, stored, strict=True)
                if t.depends_on and sid == t.id
                for dep in t.depends_on
            ]
            if edges:
                conn.executemany(_SQL["dependency_insert"], edges)
            return stored

        return await self._write(job)

    async def _task_transition_many(self, transitions: Sequence[Transition]) -> list[str]:
        params = [
            (
                tr.state.value,
                tr.attempt,
                tr.at,
                tr.run_at,
                tr.started_at,
                tr.finished_at,
                tr.result,
                tr.error,
                tr.lease_owner,
                tr.task_id,
            )
            for tr in transitions
        ]

        def executions(conn: sqlite3.Connection, refused: set[int]) -> None:
            rows_ = [
                (
                    tr.task_id,
                    tr.attempt,
                    tr.started_at,
                    tr.finished_at,
                    tr.outcome.value if tr.outcome is not None else None,
                    tr.error if tr.outcome is not None else None,
                    tr.worker,
                )
                for i, tr in enumerate(transitions)
                if (tr.started_at is not None or tr.outcome is not None) and i not in refused
            ]
            if rows_:
                conn.executemany(_SQL["execution_upsert"], rows_)

        def exact(conn: sqlite3.Connection) -> list[str]:
            # Row by row, to learn which rows were refused (one id may appear twice in a
            # batch, so the stored rows alone cannot say which report lost).
            refused = {
                i
                for i, p in enumerate(params)
                if conn.execute(_SQL["task_transition"], p).rowcount == 0
            }
            executions(conn, refused)
            return [transitions[i].task_id for i in sorted(refused)]

        def job(conn: sqlite3.Connection) -> list[str]:
            # rowcount of executemany sums sqlite3_changes() per row, which leaves out the
            # trigger-made changes that total_changes would include.
            if conn.executemany(_SQL["task_transition"], params).rowcount != len(params):
                raise Replay(exact)  # rare: undo this batch and run it row by row
            executions(conn, set())
            return []

        return await self._write(job)

    async def _task_cancel_many(self, ids: Sequence[str], now: float) -> list[str]:
        args = (now, rows.json_list(ids))
        return await self._write(
            lambda conn: [r[0] for r in conn.execute(_SQL["task_cancel"], args)]
        )

    async def _task_retry_many(self, ids: Sequence[str], now: float) -> list[str]:
        args = (now, rows.json_list(ids))
        return await self._write(
            lambda conn: [r[0] for r in conn.execute(_SQL["task_retry"], args)]
        )

    async def _task_claim(self, owner: str, limit: int, now: float, horizon: float) -> list[Task]:
        args = {"owner": owner, "limit": limit, "now": now, "horizon": horizon}

        def job(conn: sqlite3.Connection) -> list[Task]:
            claimed = [rows.task_from_row(r) for r in conn.execute(_SQL["task_claim"], args)]
            claimed.sort(key=lambda t: t.sort_key)  # RETURNING order is unspecified
            return claimed

        return await self._write(job)

    async def _task_release(self, owner: str, ids: Sequence[str] | None) -> int:
        sql = _SQL["task_release_all" if ids is None else "task_release"]
        args: tuple[str, ...] = (owner,) if ids is None else (owner, rows.json_list(ids))
        return await self._write(lambda conn: conn.execute(sql, args).rowcount)

    async def _task_recover(self, now: float, owners: Sequence[str] | None) -> RecoveryReport:
        who = None if owners is None else rows.json_list(owners)

        def job(conn: sqlite3.Connection) -> RecoveryReport:
            conn.execute(_SQL["recover_executions"], (now, who))
            running = conn.execute(_SQL["recover_running"], (now, who)).rowcount
            # Counts only the leases of tasks that were not running (those are counted above).
            leases = conn.execute(_SQL["recover_leases"], (who,)).rowcount
            return RecoveryReport(requeued_running=running, released_leases=leases)

        return await self._write(job)

    async def _task_release_dependents(
        self, finished_ids: Sequence[str], now: float
    ) -> DependencyRelease:
        args = (now, rows.json_list(finished_ids))

        def job(conn: sqlite3.Connection) -> DependencyRelease:
            cancelled = [r[0] for r in conn.execute(_SQL["dependents_cancel"], args)]
            ready = [rows.task_from_row(r) for r in conn.execute(_SQL["dependents_ready"], args)]
            ready.sort(key=lambda t: t.sort_key)
            return DependencyRelease(ready=ready, cancelled=sorted(cancelled))

        return await self._write(job)

    # ---- read primitives ---------------------------------------------------------------------

    async def _task_get_many(self, ids: Sequence[str]) -> list[Task]:
        args = (rows.json_list(ids),)
        return await self._read(
            lambda conn: [rows.task_from_row(r) for r in conn.execute(_SQL["task_get_many"], args)]
        )

    async def _task_list(self, flt: TaskFilter) -> TaskPage:
        sql, params = rows.list_query(flt)

        def job(conn: sqlite3.Connection) -> TaskPage:
            found = [rows.task_from_row(r) for r in conn.execute(sql, params)]
            return TaskPage(items=found[: flt.size], has_more=len(found) > flt.size)

        return await self._read(job)

    async def _task_counts(self) -> dict[TaskState, int]:
        return await self._read(
            lambda conn: {rows.state_from_text(s): n for s, n in conn.execute(_SQL["task_counts"])}
        )

    async def _task_counts_by(self, column: str) -> dict[tuple[str, TaskState], int]:
        sql = _SQL[f"task_counts_by_{column}"]
        return await self._read(
            lambda conn: {(k, rows.state_from_text(s)): n for k, s, n in conn.execute(sql)}
        )

    async def _execution_list(self, task_id: str) -> list[Execution]:
        return await self._read(
            lambda conn: [
                rows.execution_from_row(r) for r in conn.execute(_SQL["execution_list"], (task_id,))
            ]
        )

    async def _ping(self) -> None:
        await self._read(lambda conn: conn.execute(_SQL["ping"]).fetchone())


def _migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations not recorded in schema_migrations, in order, inside the
    writer's transaction: a failing migration leaves the schema as it was."""
    conn.execute(_SQL["schema_migrations"])
    done = {r[0] for r in conn.execute(_SQL["migrations_applied"])}
    applied: list[int] = []
    for version, script in migrations():
        if version in done:
            continue
        for stmt in statements(script):
            conn.execute(stmt)
        conn.execute(_SQL["migration_record"], (version, time.time()))
        applied.append(version)
    return applied


__all__ = ["DatabaseLocked", "SQLiteRecordStore"]

"""PostgreSQL record store (distributed mode), on asyncpg.

Every primitive is one SQL statement per batch (never one per task); the statements live in
``sql/*.sql``. Connections come from a pool created in ``open()``; each has the store's schema
as its ``search_path`` and the codecs of ``codecs.py``. Failures to reach the server surface
as ``StoreUnavailable``; deadlocks between replicas touching the same rows are retried, which
is safe because an aborted transaction changed nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL record store needs asyncpg: pip install 'tierq[distributed]'"
    ) from exc

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
from tierq.storage.postgres import queries as q
from tierq.storage.postgres.codecs import (
    execution_from_row,
    init_connection,
    pg_microseconds,
    storable_text,
    task_document,
    task_from_row,
    transition_document,
)
from tierq.storage.postgres.ids import valid_ids
from tierq.storage.postgres.listing import list_query

log = logging.getLogger("tierq.storage.postgres")

T = TypeVar("T")
Conn = Any  # asyncpg ships no type information for connections

# Errors meaning "the database cannot be reached or cannot serve right now", as opposed to
# a bug in a statement: the caller keeps its batch and retries later.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,  # pool acquire or connect timed out
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # failover in progress
)
_RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
# Refusals of the data itself (bad value, constraint): the same write can never succeed.
_DATA: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
)
_TX_ATTEMPTS = 5
_STATES: dict[str, TaskState] = {s.value: s for s in TaskState}


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag, e.g. "UPDATE 3".
    return int(status.rsplit(" ", 1)[-1])


def _rounds(transitions: Sequence[Transition]) -> list[list[Transition]]:
    """Split a batch so each round holds a task at most once, keeping each task's order.

    One UPDATE ... FROM unnest() may apply only one of several rows for the same task, so a
    task that starts and finishes within one flush needs its transitions in sequence.
    """
    seen: dict[str, int] = {}
    rounds: list[list[Transition]] = []
    for t in transitions:
        n = seen.get(t.task_id, 0)
        seen[t.task_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(t)
    # Rows are locked in the order given; replicas sending overlapping batches in id order
    # wait for each other instead of deadlocking (the retry below is the backstop).
    for batch in rounds:
        batch.sort(key=_by_task_id)
    return rounds


def _by_task_id(t: Transition) -> str:
    return t.task_id


async def _keep_session(conn: Conn) -> None:
    """Pool ``reset`` hook: asyncpg's default runs a reset query (advisory unlocks, CLOSE ALL,
    UNLISTEN, RESET ALL), one more round trip on every release: 4.6% of the loop's samples at
    1,200 single submits/s, and PostgreSQL's CPU at 1,000/s went from 47-48% to 42% of a
    core without it. The pool still rolls back an open transaction before calling this.

    What must stay true: this store leaves no session state on a pooled connection (no SET,
    LISTEN, session advisory lock or WITH HOLD cursor; the migration lock is
    transaction-scoped; search_path is a startup setting)."""


class PostgresRecordStore(RecordStore):
    capabilities = RecordCapabilities(shared=True)

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._pool: Any = None  # asyncpg.Pool, created in open() on the running loop

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        # search_path takes identifiers: quote so any schema name is taken literally.
        quoted = '"' + self._schema.replace('"', '""') + '"'
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                init=init_connection,
                reset=_keep_session,
                server_settings={"search_path": quoted, "application_name": "tierq"},
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        self._pool = pool
        try:
            applied = await self.migrate()
        except BaseException:
            self._pool = None
            pool.terminate()
            raise
        self.migrations_applied = tuple(applied)
        if applied:
            log.info("applied migrations %s to schema %s", applied, self._schema)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def migrate(self) -> list[int]:
        async with self._acquire() as conn, conn.transaction():
            # Replicas starting together queue here; the later ones then see the versions
            # the first one recorded and apply nothing.
            await conn.fetchval(q.MIGRATE_LOCK, self._schema)
            create_schema = await conn.fetchval(q.SCHEMA_CREATE, self._schema)
            if create_schema is not None:
                await conn.execute(create_schema)
            await conn.execute(q.MIGRATIONS_TABLE)
            done = [r[0] for r in await conn.fetch(q.MIGRATIONS_APPLIED)]
            applied: list[int] = []
            for migration in pending(q.MIGRATIONS, done):
                await conn.execute(migration.sql)
                await conn.execute(q.MIGRATION_RECORD, migration.version, migration.name)
                applied.append(migration.version)
            return applied

    # ---- plumbing --------------------------------------------------------------------------

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Conn]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("PostgreSQL record store is not open")
        try:
            # The timeout covers acquiring only. asyncio.timeout instead of acquire(timeout=),
            # which runs the acquire in a task of its own (wait_for): a task per store call.
            async with asyncio.timeout(self._acquire_timeout):
                conn = await pool.acquire()
            try:
                yield conn
            finally:
                await pool.release(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc

    async def _run(self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool = False) -> T:
        """Run ``fn`` on a pooled connection, retrying deadlocks and serialization failures."""
        for attempt in range(1, _TX_ATTEMPTS + 1):
            try:
                async with self._acquire() as conn:
                    if not transaction:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
            except _DATA as exc:
                raise StoreDataError(f"PostgreSQL refused the data: {exc}") from exc
            except _RETRYABLE as exc:
                if attempt == _TX_ATTEMPTS:
                    raise
                log.info("retrying after %s (attempt %d)", type(exc).__name__, attempt)
        raise AssertionError("unreachable")

    # ---- writes ----------------------------------------------------------------------------

    async def _task_insert_many(self, tasks: Sequence[Task]) -> list[str]:
        document = await offload.build(task_document, tasks)
        return await self._run(lambda c: self.insert_on(c, tasks, document))

    async def insert_on(self, conn: Conn, tasks: Sequence[Task], document: bytes) -> list[str]:
        """The insert of ``tasks`` (``document``: codecs.task_document) on ``conn``, inside
        whatever transaction the caller holds there (a schedule fire holds one)."""
        inserted: int = await conn.fetchval(q.TASK_INSERT, document)
        if inserted == len(tasks):
            return [t.id for t in tasks]
        # Keys as stored (NUL replaced, see codecs.storable_text), so a key with a NUL in it
        # finds its holder too.
        # A key is unique per tenant: holders are looked up by (key, tenant).
        keys = [(storable_text(t.idempotency_key) or "", t.tenant) for t in tasks]
        wanted = sorted(
            {k for t, (k, _) in zip(tasks, keys, strict=True) if t.idempotency_key is not None}
        )
        holders: dict[tuple[str, str], str] = {}
        if wanted:
            rows = await conn.fetch(q.TASK_KEY_HOLDERS, wanted)
            holders = {(r[0], r[1]): r[2] for r in rows}
        # A skipped task without a key (or whose key nobody holds) already exists under its
        # own id; a keyed one maps to whoever holds the key, possibly earlier in this batch.
        out: list[str] = []
        for t, key in zip(tasks, keys, strict=True):
            holder = holders.get(key) if t.idempotency_key is not None else None
            out.append(t.id if holder is None or holder == t.id.lower() else holder)
        return out

    async def _task_transition_many(self, transitions: Sequence[Transition]) -> list[str]:
        rounds = _rounds(transitions)
        documents = [await offload.build(transition_document, batch) for batch in rounds]

        async def apply(conn: Conn) -> list[str]:
            refused: list[str] = []
            for batch, document in zip(rounds, documents, strict=True):
                rows = await conn.fetch(q.TASK_TRANSITION, document)
                if rows:
                    given = {t.task_id.lower(): t.task_id for t in batch}
                    refused.extend(given[r[0]] for r in rows)
            return refused

        return await self._run(apply, transaction=len(rounds) > 1)

    async def _task_cancel_many(self, ids: Sequence[str], now: float) -> list[str]:
        return await self._update_ids(q.TASK_CANCEL, ids, now)

    async def _task_retry_many(self, ids: Sequence[str], now: float) -> list[str]:
        return await self._update_ids(q.TASK_RETRY, ids, now)

    async def _update_ids(self, sql: str, ids: Sequence[str], now: float) -> list[str]:
        given = valid_ids(ids)
        if not given:
            return []
        rows = await self._run(lambda c: c.fetch(sql, list(given), now))
        changed = {r[0] for r in rows}
        return [original for norm, original in given.items() if norm in changed]

    async def _task_claim(
        self, owner: str, limit: int, now: float, horizon: float, skip: Sequence[str]
    ) -> list[Task]:
        rows = await self._run(
            lambda c: c.fetch(q.TASK_CLAIM, owner, limit, now, now + horizon, list(skip))
        )
        return [task_from_row(r) for r in rows]

    async def _task_release(self, owner: str, ids: Sequence[str] | None) -> int:
        if ids is None:
            status = await self._run(lambda c: c.execute(q.TASK_RELEASE_ALL, owner))
        else:
            given = valid_ids(ids)
            if not given:
                return 0
            status = await self._run(lambda c: c.execute(q.TASK_RELEASE_IDS, owner, list(given)))
        return _rowcount(status)

    async def _task_recover(self, now: float, owners: Sequence[str] | None) -> RecoveryReport:
        args = None if owners is None else list(owners)
        row = await self._run(lambda c: c.fetchrow(q.TASK_RECOVER, now, args))
        return RecoveryReport(requeued_running=row[0], released_leases=row[1])

    async def _task_release_dependents(
        self, finished_ids: Sequence[str], now: float
    ) -> DependencyRelease:
        given = valid_ids(finished_ids)
        if not given:
            return DependencyRelease()
        rows = await self._run(lambda c: c.fetch(q.TASK_RELEASE_DEPENDENTS, list(given), now))
        ready: list[Task] = []
        cancelled: list[str] = []
        for r in rows:
            task = task_from_row(r)
            if task.state is TaskState.CANCELLED:
                cancelled.append(task.id)
            else:
                ready.append(task)
        return DependencyRelease(ready=ready, cancelled=cancelled)

    # ---- reads -----------------------------------------------------------------------------

    async def _task_get_many(self, ids: Sequence[str], tenant: str | None) -> list[Task]:
        given = valid_ids(ids)
        if not given:
            return []
        rows = await self._run(lambda c: c.fetch(q.TASK_GET_MANY, list(given), tenant))
        return [task_from_row(r) for r in rows]

    async def _task_list(self, flt: TaskFilter) -> TaskPage:
        sql, args = list_query(flt)
        rows = await self._run(lambda c: c.fetch(sql, *args))
        items = [task_from_row(r) for r in rows[: flt.size]]
        return TaskPage(items=items, has_more=len(rows) > flt.size)

    async def _task_counts(self, tenant: str | None) -> dict[TaskState, int]:
        if tenant is None:
            rows = await self._run(lambda c: c.fetch(q.TASK_COUNTS))
        elif tenant == "default":
            rows = await self._run(lambda c: c.fetch(q.TASK_COUNTS_DEFAULT_TENANT))
        else:
            rows = await self._run(lambda c: c.fetch(q.TASK_COUNTS_TENANT, tenant))
        return {_STATES[r[0]]: r[1] for r in rows}

    async def _task_purge(self, cutoffs: Mapping[TaskState, float], limit: int) -> list[str]:
        args: list[Any] = []
        for state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED):
            cutoff = cutoffs.get(state)
            args += [None, None] if cutoff is None else [id_floor(cutoff), pg_microseconds(cutoff)]
        rows = await self._run(lambda c: c.fetch(q.TASK_PURGE, *args, limit))
        return [r[0] for r in rows]

    async def _execution_list(self, task_id: str) -> list[Execution]:
        if not valid_ids([task_id]):
            return []
        rows = await self._run(lambda c: c.fetch(q.EXECUTION_LIST, task_id))
        return [execution_from_row(r) for r in rows]

    async def _ping(self) -> None:
        await self._run(lambda c: c.fetchval(q.PING))

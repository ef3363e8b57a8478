"""Schedules in PostgreSQL, on the record store's pool. A fire is one transaction: the
schedule updates (compare-and-set), the task insert of the fires applied, the skipped ticks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from tierq.model import Schedule, ScheduleFilter, ScheduleFire, ScheduleRun, TaskState
from tierq.storage import offload
from tierq.storage.base import StoreDataError
from tierq.storage.postgres.codecs import task_document
from tierq.storage.postgres.queries import sql
from tierq.storage.postgres.store import Conn, PostgresRecordStore
from tierq.storage.schedules import (
    FireResult,
    Outcome,
    ScheduleNameTaken,
    ScheduleStore,
    advance_document,
    fold_outcomes,
    is_trigger_key,
    skip_run,
)

_INSERT = sql("schedules_insert")
_GET = sql("schedules_get")
_LIST = sql("schedules_list")
_LOAD_ALL = sql("schedules_load_all")
_LOAD_IDS = sql("schedules_load_ids")
_CHANGED_SINCE = sql("schedules_changed_since")
_UPDATE = sql("schedules_update")
_DELETE = sql("schedules_delete")
_ADVANCE = sql("schedules_advance")
_SKIP_INSERT = sql("schedules_skip_insert")
_OUTCOMES = sql("schedules_outcomes")
_RUNS_FIRED = sql("schedules_runs_fired")
_RUNS_SKIPPED = sql("schedules_runs_skipped")
_TRIM_SKIPS = sql("schedules_trim_skips")


def _schedule(r: Any) -> Schedule:
    return Schedule(
        id=r[0],
        tenant=r[1],
        name=r[2],
        spec=bytes(r[3]) if not isinstance(r[3], str) else r[3].encode(),
        paused=r[4],
        version=r[5],
        last_tick=r[6],
        runs=r[7],
        failures=r[8],
        last_task_id=r[9],
        next_fire_at=r[10],
        created_at=r[11],
        updated_at=r[12],
    )


class PostgresScheduleStore(ScheduleStore):
    def __init__(self, record: PostgresRecordStore) -> None:
        self._record = record

    async def _create(self, s: Schedule) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(
                _INSERT,
                s.id,
                s.tenant,
                s.name,
                s.spec,
                s.paused,
                s.version,
                s.last_tick,
                s.runs,
                s.failures,
                s.last_task_id,
                s.next_fire_at,
                s.created_at,
                s.updated_at,
            )

        try:
            await self._record._run(run)
        except StoreDataError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise ScheduleNameTaken(s.name) from None
            raise

    async def _get(self, schedule_id: str, tenant: str | None) -> Schedule | None:
        row = await self._record._run(lambda c: c.fetchrow(_GET, schedule_id, tenant))
        return None if row is None else _schedule(row)

    async def _list(self, flt: ScheduleFilter) -> list[Schedule]:
        rows = await self._record._run(
            lambda c: c.fetch(
                _LIST, flt.paused, flt.name_prefix, flt.after_id, flt.size + 1, flt.tenant
            )
        )
        return [_schedule(r) for r in rows]

    async def _update(
        self,
        schedule_id: str,
        version: int,
        name: str,
        spec: bytes,
        paused: bool,
        now: float,
        reset_failures: bool,
    ) -> Schedule | None:
        try:
            row = await self._record._run(
                lambda c: c.fetchrow(
                    _UPDATE, name, spec, paused, now, reset_failures, schedule_id, version
                )
            )
        except StoreDataError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise ScheduleNameTaken(name) from None
            raise
        return None if row is None else _schedule(row)

    async def _delete(self, schedule_id: str) -> bool:
        status: str = await self._record._run(lambda c: c.execute(_DELETE, schedule_id))
        return status != "DELETE 0"

    async def _load(self, ids: Sequence[str] | None) -> list[Schedule]:
        if ids is None:
            rows = await self._record._run(lambda c: c.fetch(_LOAD_ALL))
        else:
            wanted = list(ids)
            rows = await self._record._run(lambda c: c.fetch(_LOAD_IDS, wanted))
        return [_schedule(r) for r in rows]

    async def _changed_since(self, since: float) -> list[Schedule]:
        rows = await self._record._run(lambda c: c.fetch(_CHANGED_SINCE, since))
        return [_schedule(r) for r in rows]

    async def _fire(self, fires: Sequence[ScheduleFire], now: float) -> FireResult:
        advance = orjson.dumps(advance_document(fires)).decode()
        record = self._record

        async def run(conn: Conn) -> FireResult:
            advanced = {r[0] for r in await conn.fetch(_ADVANCE, advance)}
            applied = [f.trigger or f.schedule_id in advanced for f in fires]
            tasks = [t for f, ok in zip(fires, applied, strict=True) if ok for t in f.tasks]
            stored_ids: list[str] = []
            if tasks:
                document = await offload.build(task_document, tasks)
                stored_ids = await record.insert_on(conn, tasks, document)
            skips = [
                {"schedule_id": s.schedule_id, "tick": s.tick, "at": s.at, "reason": s.reason}
                for f, ok in zip(fires, applied, strict=True)
                if ok
                for s in f.skips
            ]
            if skips:
                await conn.execute(_SKIP_INSERT, orjson.dumps(skips).decode())
            position = iter(stored_ids)
            stored: list[str | None] = [
                next(position) if ok else None
                for f, ok in zip(fires, applied, strict=True)
                for _ in f.tasks
            ]
            return applied, stored

        return await record._run(run, transaction=True)

    async def _record_outcomes(self, outcomes: Sequence[Outcome], now: float) -> list[str]:
        folded = fold_outcomes(outcomes)
        document = orjson.dumps(
            [{"id": sid, "reset": reset, "add": add} for sid, (reset, add) in folded.items()]
        ).decode()
        rows = await self._record._run(lambda c: c.fetch(_OUTCOMES, document, now))
        return [r[0] for r in rows]

    async def _runs_fired(
        self, schedule_id: str, before: float | None, limit: int
    ) -> list[ScheduleRun]:
        rows = await self._record._run(lambda c: c.fetch(_RUNS_FIRED, schedule_id, before, limit))
        return [
            ScheduleRun(
                tick=r[0],
                at=r[1],
                task_id=r[2],
                state=TaskState(r[3]),
                trigger=is_trigger_key(r[4]),
            )
            for r in rows
        ]

    async def _runs_skipped(
        self, schedule_id: str, before: float | None, limit: int
    ) -> list[ScheduleRun]:
        rows = await self._record._run(lambda c: c.fetch(_RUNS_SKIPPED, schedule_id, before, limit))
        return [skip_run(r[0], r[1], r[2]) for r in rows]

    async def _trim_skips(self, before: float) -> int:
        count: int = await self._record._run(lambda c: c.fetchval(_TRIM_SKIPS, before))
        return count

"""Schedules in the embedded SQLite file, written on the record store's writer thread, so a
fire's tasks and schedule updates share one transaction (and the group commit)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from tierq.model import Schedule, ScheduleFilter, ScheduleFire, ScheduleRun, TaskState
from tierq.storage.base import StoreDataError
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
from tierq.storage.sqlite import writes
from tierq.storage.sqlite.connection import Replay
from tierq.storage.sqlite.sqlfiles import load_sections
from tierq.storage.sqlite.store import SQLiteRecordStore

_SQL = load_sections("schedules")


def _schedule(r: Any) -> Schedule:
    return Schedule(
        id=r[0],
        tenant=r[1],
        name=r[2],
        spec=bytes(r[3]),
        paused=bool(r[4]),
        version=r[5],
        last_tick=r[6],
        runs=r[7],
        failures=r[8],
        last_task_id=r[9],
        next_fire_at=r[10],
        created_at=r[11],
        updated_at=r[12],
    )


def _name_taken(exc: StoreDataError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, sqlite3.IntegrityError) and "schedules.name" in str(cause)


def _fire_job(fires: Sequence[ScheduleFire], now: float, exact: bool = False) -> Any:
    document = orjson.dumps(advance_document(fires)).decode()

    def job(conn: sqlite3.Connection) -> FireResult:
        advanced = {r[0] for r in conn.execute(_SQL["advance"], (document,))}
        applied = [f.trigger or f.schedule_id in advanced for f in fires]
        tasks = [t for f, ok in zip(fires, applied, strict=True) if ok for t in f.tasks]
        if exact:
            stored_ids = writes.insert_exact_job(tasks)(conn) if tasks else []
        else:
            try:
                stored_ids = writes.insert_job(tasks)(conn) if tasks else []
            except Replay:
                # The insert met a duplicate id and wants to go row by row: replay this whole
                # job that way, so the schedule updates stay in the transaction.
                raise Replay(_fire_job(fires, now, exact=True)) from None
        kept = [
            (s.schedule_id, s.tick, s.at, s.reason.value)
            for f, ok in zip(fires, applied, strict=True)
            if ok
            for s in f.skips
        ]
        if kept:
            conn.executemany(_SQL["skip_insert"], kept)
        stored: list[str | None] = []
        position = iter(stored_ids)
        for f, ok in zip(fires, applied, strict=True):
            for _ in f.tasks:
                stored.append(next(position) if ok else None)
        return applied, stored

    return job


class SQLiteScheduleStore(ScheduleStore):
    def __init__(self, record: SQLiteRecordStore) -> None:
        self._record = record

    async def _create(self, s: Schedule) -> None:
        values = (
            s.id,
            s.tenant,
            s.name,
            s.spec,
            int(s.paused),
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
            await self._record._write(lambda c: c.execute(_SQL["insert"], values), urgent=True)
        except StoreDataError as exc:
            if _name_taken(exc):
                raise ScheduleNameTaken(s.name) from None
            raise

    async def _get(self, schedule_id: str, tenant: str | None) -> Schedule | None:
        args = (schedule_id, tenant)
        row = await self._record._read(lambda c: c.execute(_SQL["get"], args).fetchone())
        return None if row is None else _schedule(row)

    async def _list(self, flt: ScheduleFilter) -> list[Schedule]:
        paused = None if flt.paused is None else int(flt.paused)
        args = (paused, flt.name_prefix, flt.after_id, flt.size + 1, flt.tenant)
        rows = await self._record._read(lambda c: c.execute(_SQL["list"], args).fetchall())
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
        args = (name, spec, int(paused), now, int(reset_failures), schedule_id, version)

        def job(conn: sqlite3.Connection) -> Any:
            if conn.execute(_SQL["update"], args).rowcount == 0:
                return None
            return conn.execute(_SQL["get"], (schedule_id, None)).fetchone()

        try:
            row = await self._record._write(job, urgent=True)
        except StoreDataError as exc:
            if _name_taken(exc):
                raise ScheduleNameTaken(name) from None
            raise
        return None if row is None else _schedule(row)

    async def _delete(self, schedule_id: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            conn.execute(_SQL["delete_skips"], (schedule_id,))
            return bool(conn.execute(_SQL["delete"], (schedule_id,)).rowcount)

        return bool(await self._record._write(job, urgent=True))

    async def _load(self, ids: Sequence[str] | None) -> list[Schedule]:
        if ids is None:
            rows = await self._record._read(lambda c: c.execute(_SQL["load_all"]).fetchall())
        else:
            doc = orjson.dumps(list(ids)).decode()
            rows = await self._record._read(
                lambda c: c.execute(_SQL["load_ids"], (doc,)).fetchall()
            )
        return [_schedule(r) for r in rows]

    async def _changed_since(self, since: float) -> list[Schedule]:
        rows = await self._record._read(
            lambda c: c.execute(_SQL["changed_since"], (since,)).fetchall()
        )
        return [_schedule(r) for r in rows]

    async def _fire(self, fires: Sequence[ScheduleFire], now: float) -> FireResult:
        size = sum(len(f.tasks) for f in fires)
        result: FireResult = await self._record._write(
            _fire_job(fires, now), urgent=True, size=size
        )
        return result

    async def _record_outcomes(self, outcomes: Sequence[Outcome], now: float) -> list[str]:
        folded = fold_outcomes(outcomes)
        doc = orjson.dumps(list(folded)).decode()

        def job(conn: sqlite3.Connection) -> list[str]:
            paused_now: list[str] = []
            updates = []
            for sid, failures, paused, limit in conn.execute(_SQL["failures_of"], (doc,)):
                reset, add = folded[sid]
                count = (0 if reset else failures) + add
                pause = not paused and limit > 0 and count >= limit
                if pause:
                    paused_now.append(sid)
                updates.append((count, int(bool(paused) or pause), int(pause), now, sid))
            conn.executemany(_SQL["failures_set"], updates)
            return paused_now

        paused: list[str] = await self._record._write(job)
        return paused

    async def _runs_fired(
        self, schedule_id: str, before: float | None, limit: int
    ) -> list[ScheduleRun]:
        rows = await self._record._read(
            lambda c: c.execute(_SQL["runs_fired"], (schedule_id, before, limit)).fetchall()
        )
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
        rows = await self._record._read(
            lambda c: c.execute(_SQL["runs_skipped"], (schedule_id, before, limit)).fetchall()
        )
        return [skip_run(r[0], r[1], r[2]) for r in rows]

    async def _trim_skips(self, before: float) -> int:
        count: int = await self._record._write(
            lambda c: c.execute(_SQL["trim_skips"], (before,)).rowcount
        )
        return count

"""Schedules in the record store's database (the SQLite file, or PostgreSQL), through the
record store's own connections, because a fire must commit the tasks of its ticks and the
schedules' new state in one transaction.

Public methods check arguments and skip empty batches; backends fill the primitives. Each
write is one transaction, and a fire is one statement per table whatever the number of
schedules in it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from tierq.model import Schedule, ScheduleFilter, ScheduleFire, ScheduleRun, SkipReason

# Outcomes recorded after a run ends: (schedule id, whether the run failed).
Outcome = tuple[str, bool]
# What a fire applied: per fire, and the stored id of each of its tasks (None: not applied).
FireResult = tuple[list[bool], list[str | None]]


class ScheduleNameTaken(Exception):
    """Another schedule of the tenant has this name."""


class ScheduleStore(abc.ABC):
    async def create(self, schedule: Schedule) -> None:
        """Insert; ScheduleNameTaken when the tenant already has the name."""
        await self._create(schedule)

    async def get(self, schedule_id: str, tenant: str | None = None) -> Schedule | None:
        """The schedule, if it belongs to ``tenant`` (None: any tenant)."""
        return await self._get(schedule_id, tenant)

    async def page(self, flt: ScheduleFilter) -> tuple[list[Schedule], bool]:
        """One page in id order (ids are time-ordered: oldest first), and whether more follow."""
        if flt.size <= 0:
            raise ValueError("size must be positive")
        rows = await self._list(flt)
        return rows[: flt.size], len(rows) > flt.size

    async def update(
        self,
        schedule_id: str,
        version: int,
        *,
        name: str,
        spec: bytes,
        paused: bool,
        now: float,
        reset_failures: bool = False,
    ) -> Schedule | None:
        """Replace the definition while the stored version is ``version``; the version then
        grows by one. None when the schedule is gone or was changed meanwhile (the caller
        reads it again). ScheduleNameTaken for a name in use."""
        return await self._update(schedule_id, version, name, spec, paused, now, reset_failures)

    async def delete(self, schedule_id: str) -> bool:
        """Delete the schedule and its skipped ticks; the tasks it fired stay."""
        return await self._delete(schedule_id)

    async def load(self, ids: Sequence[str] | None = None) -> list[Schedule]:
        """Every schedule (``ids`` None) or those of ``ids`` that exist."""
        if ids is not None and not ids:
            return []
        return await self._load(ids)

    async def changed_since(self, since: float) -> list[Schedule]:
        """Schedules whose ``updated_at`` is at or after ``since``."""
        return await self._changed_since(since)

    async def fire(self, fires: Sequence[ScheduleFire], now: float) -> FireResult:
        """Apply a scheduler pass in one transaction: for each fire whose schedule still has
        its ``version`` and ``expected_last_tick`` (or any trigger), insert its tasks (keyed,
        so a tick already fired is not fired again), record its skipped ticks and advance the
        schedule (last_tick, runs, last_task_id, next_fire_at).

        Returns, fire for fire, whether it was applied, and for every task of the fires (in
        order) the id it is stored under (its own, or the holder of its key), None for the
        tasks of fires not applied, which are not inserted."""
        if not fires:
            return [], []
        return await self._fire(fires, now)

    async def record_outcomes(self, outcomes: Sequence[Outcome], now: float) -> list[str]:
        """Runs that ended: a failed one adds to its schedule's consecutive failures, any other
        resets them; a schedule reaching its ``pause_after_failures`` is paused (its version
        grows). Returns the ids of schedules paused by this call."""
        if not outcomes:
            return []
        return await self._record_outcomes(outcomes, now)

    async def runs(self, schedule_id: str, before: float | None, limit: int) -> list[ScheduleRun]:
        """The newest ``limit`` entries of the history with a tick before ``before`` (any
        when None), newest first: fired ticks and triggers (from the tasks) and skipped ticks."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        fired = await self._runs_fired(schedule_id, before, limit)
        skipped = await self._runs_skipped(schedule_id, before, limit)
        merged = sorted([*fired, *skipped], key=lambda r: (r.tick, r.at), reverse=True)
        return merged[:limit]

    async def trim_skips(self, before: float) -> int:
        """Forget skipped ticks recorded before ``before``."""
        return await self._trim_skips(before)

    # ---- primitives ------------------------------------------------------------------------

    @abc.abstractmethod
    async def _create(self, schedule: Schedule) -> None: ...

    @abc.abstractmethod
    async def _get(self, schedule_id: str, tenant: str | None) -> Schedule | None: ...

    @abc.abstractmethod
    async def _list(self, flt: ScheduleFilter) -> list[Schedule]:
        """Up to ``flt.size + 1`` rows."""

    @abc.abstractmethod
    async def _update(
        self,
        schedule_id: str,
        version: int,
        name: str,
        spec: bytes,
        paused: bool,
        now: float,
        reset_failures: bool,
    ) -> Schedule | None: ...

    @abc.abstractmethod
    async def _delete(self, schedule_id: str) -> bool: ...

    @abc.abstractmethod
    async def _load(self, ids: Sequence[str] | None) -> list[Schedule]: ...

    @abc.abstractmethod
    async def _changed_since(self, since: float) -> list[Schedule]: ...

    @abc.abstractmethod
    async def _fire(self, fires: Sequence[ScheduleFire], now: float) -> FireResult: ...

    @abc.abstractmethod
    async def _record_outcomes(self, outcomes: Sequence[Outcome], now: float) -> list[str]: ...

    @abc.abstractmethod
    async def _runs_fired(
        self, schedule_id: str, before: float | None, limit: int
    ) -> list[ScheduleRun]: ...

    @abc.abstractmethod
    async def _runs_skipped(
        self, schedule_id: str, before: float | None, limit: int
    ) -> list[ScheduleRun]: ...

    @abc.abstractmethod
    async def _trim_skips(self, before: float) -> int: ...


def skip_run(tick: float, at: float, reason: str) -> ScheduleRun:
    return ScheduleRun(tick=tick, at=at, reason=SkipReason(reason))


def fold_outcomes(outcomes: Sequence[Outcome]) -> dict[str, tuple[bool, int]]:
    """Per schedule, in order: whether its failure count restarts from 0 (a run that did not
    fail), and the failures to add after that."""
    folded: dict[str, tuple[bool, int]] = {}
    for schedule_id, failed in outcomes:
        reset, add = folded.get(schedule_id, (False, 0))
        folded[schedule_id] = (reset, add + 1) if failed else (True, 0)
    return folded


def advance_document(fires: Sequence[ScheduleFire]) -> list[dict[str, object]]:
    """The schedule updates of a fire (triggers change no schedule)."""
    return [
        {
            "id": f.schedule_id,
            "version": f.version,
            "expected": f.expected_last_tick,
            "last_tick": f.last_tick,
            "fired": sum(1 for t in f.tasks),
            "last_task_id": f.tasks[-1].id if f.tasks else None,
            "next": f.next_fire_at,
        }
        for f in fires
        if not f.trigger
    ]


TRIGGER_MARK = ":trigger:"


def is_trigger_key(key: str | None) -> bool:
    """Triggered runs carry a key with this mark (or none); ticks carry ``:tick:``."""
    return key is None or TRIGGER_MARK in key

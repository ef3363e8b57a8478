"""Schedules as the API sees them: create, read, edit, pause, trigger, history, preview;
and the services behind them (the scheduler, and the recorder of run outcomes).

Every change is written to the store, then announced (the dispatch tier's pub/sub when
distributed), so the leader, wherever it runs, reloads the schedule at once; the leader's
periodic synchronisation catches an announcement that was lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from tierq.config import Settings
from tierq.engine.errors import (
    AlreadyExists,
    Conflict,
    EngineError,
    FieldError,
    NotFound,
    Submitted,
    field_error,
)
from tierq.engine.handlers.base import HandlerRegistry
from tierq.engine.instruments import EngineMetrics
from tierq.engine.intake import build_task
from tierq.engine.schedules.cron import Cron, CronError, FixedRate, next_times, zone
from tierq.engine.schedules.outcomes import Outcomes
from tierq.engine.schedules.plan import activate, make_task
from tierq.engine.schedules.scheduler import Scheduler
from tierq.engine.schedules.spec import (
    ScheduleIn,
    ScheduleSpec,
    as_input,
    build_spec,
    check_cron,
    decode_spec,
    encode_spec,
)
from tierq.ids import new_id
from tierq.model import (
    DEFAULT_TENANT,
    Schedule,
    ScheduleFilter,
    ScheduleFire,
    ScheduleRun,
    Task,
    TaskState,
)
from tierq.storage.base import Dispatch
from tierq.storage.leader import Leader
from tierq.storage.schedules import TRIGGER_MARK, ScheduleNameTaken, ScheduleStore

log = logging.getLogger("tierq.schedules")

NEXT_RUNS = 5
MAX_PREVIEW = 100
_EDIT_ATTEMPTS = 5
_edit_decoder = msgspec.json.Decoder(ScheduleIn)


@dataclass(frozen=True, slots=True)
class ScheduleView:
    schedule: Schedule
    spec: ScheduleSpec
    next_runs: list[float]
    last_run: ScheduleRun | None

    @property
    def state(self) -> str:
        if self.schedule.paused:
            return "paused"
        return "active" if self.next_runs else "done"


Commit = Callable[[Sequence[Task]], Awaitable[Sequence[str | None]]]


@dataclass(frozen=True, slots=True)
class Admission:
    """What schedules take from the engine's submission path: ``accept`` queues tasks made
    durable by a given commit, ``after_insert`` publishes and writes them through as the
    group committer's commits do; the held tasks and the record store answer "how is the
    previous run doing"."""

    accept: Callable[[Sequence[Task], Commit], Awaitable[list[Submitted]]]
    after_insert: Callable[[Sequence[Task], Sequence[str | None]], Awaitable[None]]
    held: Callable[[str], Task | None]
    stored: Callable[[Sequence[str]], Awaitable[list[Task]]]


class Schedules:
    def __init__(
        self,
        settings: Settings,
        store: ScheduleStore,
        leader: Leader,
        registry: HandlerRegistry,
        dispatch: Dispatch,
        admission: Admission,
        cancel: Callable[[str], Awaitable[object]],
        instruments: EngineMetrics,
        clock: Callable[[], float],
        node_id: str,
        *,
        alone: bool = False,  # sharing PostgreSQL without Redis: edits are read every second
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self._dispatch = dispatch
        self._admission = admission
        self._cancel_task = cancel
        self._clock = clock
        self.scheduler = Scheduler(
            store,
            leader,
            self.accept_fired,
            self._states,
            self._cancel_runs,
            self.prototype,
            instruments,
            clock,
            node_id,
            grace_s=settings.schedule_grace_s,
            renew_s=leader.ttl_s / 5 if leader.ttl_s else 3600.0,
            sync_s=min(1.0, settings.schedule_sync_s) if alone else settings.schedule_sync_s,
            skip_retention_s=settings.schedule_skip_retention_s,
            pass_gap_s=settings.schedule_batch_ms / 1000.0,
        )
        dispatch.listen_schedules(self.scheduler.changed)
        self.outcomes = Outcomes(store, dispatch.announce_schedules, clock)

    async def accept_fired(
        self, fires: Sequence[ScheduleFire]
    ) -> tuple[list[bool], list[Submitted]]:
        """A scheduler pass (or a trigger): its tasks and the schedules' new state in one
        record transaction, then queued like a submission. Returns, fire for fire, whether
        it was applied (a stale one changes nothing), and each task's submission."""
        tasks = [t for f in fires for t in f.tasks]
        applied: list[bool] = []
        admission = self._admission

        async def commit(group: Sequence[Task]) -> list[str | None]:
            done, stored = await self.store.fire(fires, self._clock())
            applied.extend(done)
            await admission.after_insert(group, stored)
            return stored

        submitted = await admission.accept(tasks, commit)
        return applied, submitted

    async def _states(self, ids: list[str]) -> dict[str, TaskState]:
        """The states of previous runs (overlap policies): held copies first."""
        states: dict[str, TaskState] = {}
        missing: list[str] = []
        for task_id in ids:
            held = self._admission.held(task_id)
            if held is not None:
                states[task_id] = held.state
            else:
                missing.append(task_id)
        if missing:
            for task in await self._admission.stored(missing):
                states[task.id] = task.state
        return states

    async def _cancel_runs(self, ids: list[str]) -> None:
        """Previous runs a ``replace`` schedule supersedes."""
        for task_id in ids:
            with contextlib.suppress(NotFound, Conflict):  # finished meanwhile, or gone
                await self._cancel_task(task_id)

    def prototype(self, spec: ScheduleSpec, now: float) -> Task:
        """The task a tick of ``spec`` copies, validated as a submission."""
        return build_task(spec.task.task_in(), "$.task", self.settings, self.registry, now)

    # ---- reads -----------------------------------------------------------------------------

    def view(self, schedule: Schedule, last_run: ScheduleRun | None = None) -> ScheduleView:
        spec = decode_spec(schedule.spec)
        try:
            active = activate(schedule, spec, self.prototype(spec, self._clock()))
        except (EngineError, CronError):
            return ScheduleView(schedule, spec, [], last_run)
        nxt = active.next_tick
        runs: list[float] = []
        if nxt is not None:
            left = (
                NEXT_RUNS
                if spec.max_runs is None
                else min(NEXT_RUNS, spec.max_runs - schedule.runs)
            )
            runs = [nxt, *next_times(active.timing, nxt, max(0, left - 1), spec.end_at)][:left]
        return ScheduleView(schedule, spec, runs, last_run)

    async def get(self, schedule_id: str, tenant: str | None = None) -> ScheduleView:
        schedule = await self.store.get(schedule_id, tenant)
        if schedule is None:
            raise NotFound(f"no schedule {schedule_id}")
        history = await self.store.runs(schedule_id, None, 1)
        return self.view(schedule, history[0] if history else None)

    async def page(self, flt: ScheduleFilter) -> tuple[list[ScheduleView], bool]:
        rows, more = await self.store.page(flt)
        return [self.view(r) for r in rows], more

    async def runs(
        self, schedule_id: str, before: float | None, limit: int, tenant: str | None = None
    ) -> list[ScheduleRun]:
        if await self.store.get(schedule_id, tenant) is None:
            raise NotFound(f"no schedule {schedule_id}")
        return await self.store.runs(schedule_id, before, limit)

    def preview(
        self,
        cron: str | None,
        every_seconds: int | None,
        timezone: str,
        count: int,
        after: float | None,
    ) -> list[float]:
        """The next ``count`` fire times of an expression (nothing is saved)."""
        if (cron is None) == (every_seconds is None):
            raise FieldError("$.cron", "give cron or every_seconds (exactly one)")
        if not 1 <= count <= MAX_PREVIEW:
            raise FieldError("$.count", f"must be between 1 and {MAX_PREVIEW}")
        now = self._clock() if after is None else after
        timing: Cron | FixedRate
        if cron is not None:
            timing = check_cron(cron, timezone, "$.cron")
        else:
            assert every_seconds is not None
            if every_seconds < 1:
                raise FieldError("$.every_seconds", "must be at least 1")
            try:
                zone(timezone)
            except CronError as exc:
                raise FieldError("$.timezone", str(exc)) from None
            timing = FixedRate(every_seconds, float(int(now)))
            return [timing.anchor, *next_times(timing, timing.anchor, count - 1)]
        return next_times(timing, now, count)

    # ---- changes ---------------------------------------------------------------------------

    async def create(self, body: ScheduleIn, tenant: str = DEFAULT_TENANT) -> ScheduleView:
        now = self._clock()
        spec = build_spec(body, self.settings, self.registry, now)
        schedule = Schedule(
            tenant=tenant,
            id=new_id(now),
            name=spec.name,
            spec=encode_spec(spec),
            paused=body.paused,
            version=1,
            created_at=now,
            updated_at=now,
        )
        view = self.view(schedule)
        schedule.next_fire_at = view.next_runs[0] if view.next_runs else None
        try:
            await self.store.create(schedule)
        except ScheduleNameTaken:
            raise AlreadyExists("$.name", f"a schedule named {spec.name!r} exists") from None
        await self._changed(schedule.id)
        return view

    async def update(
        self, schedule_id: str, patch: dict[str, msgspec.Raw], tenant: str | None = None
    ) -> ScheduleView:
        """Merge ``patch`` (top-level fields; ``task`` merged field by field) onto the stored
        definition and validate the result as a whole, as a creation would."""
        for _ in range(_EDIT_ATTEMPTS):
            current = await self.store.get(schedule_id, tenant)
            if current is None:
                raise NotFound(f"no schedule {schedule_id}")
            spec = decode_spec(current.spec)
            merged = _merge(as_input(spec, current.paused), patch)
            try:
                body = _edit_decoder.decode(orjson.dumps(merged))
            except msgspec.ValidationError as exc:
                raise field_error(exc) from None
            timing_changed = any(
                k in patch for k in ("cron", "cron_expression", "every_seconds", "start_at")
            )
            anchor = None if timing_changed else spec.anchor
            new = build_spec(body, self.settings, self.registry, self._clock(), anchor)
            updated = await self._write(current, new, body.paused)
            if updated is not None:
                return self.view(updated)
        raise FieldError("$", "the schedule is being changed by someone else; try again")

    async def set_paused(
        self, schedule_id: str, paused: bool, tenant: str | None = None
    ) -> ScheduleView:
        for _ in range(_EDIT_ATTEMPTS):
            current = await self.store.get(schedule_id, tenant)
            if current is None:
                raise NotFound(f"no schedule {schedule_id}")
            updated = await self._write(current, decode_spec(current.spec), paused)
            if updated is not None:
                return self.view(updated)
        raise FieldError("$", "the schedule is being changed by someone else; try again")

    async def _write(self, current: Schedule, spec: ScheduleSpec, paused: bool) -> Schedule | None:
        try:
            updated = await self.store.update(
                current.id,
                current.version,
                name=spec.name,
                spec=encode_spec(spec),
                paused=paused,
                now=self._clock(),
                # Resumed by hand: the failures that paused it are forgiven.
                reset_failures=current.paused and not paused,
            )
        except ScheduleNameTaken:
            raise AlreadyExists("$.name", f"a schedule named {spec.name!r} exists") from None
        if updated is not None:
            await self._changed(updated.id)
        return updated

    async def delete(self, schedule_id: str, tenant: str | None = None) -> None:
        if tenant is not None and await self.store.get(schedule_id, tenant) is None:
            raise NotFound(f"no schedule {schedule_id}")
        if not await self.store.delete(schedule_id):
            raise NotFound(f"no schedule {schedule_id}")
        await self._changed(schedule_id)

    async def trigger(
        self, schedule_id: str, key: str | None, tenant: str | None = None
    ) -> Submitted:
        """Run now, outside the ticks. With ``key`` a retried call fires once (the key is
        scoped to the schedule) and returns the first call's task; without, every call is a
        run of its own."""
        schedule = await self.store.get(schedule_id, tenant)
        if schedule is None:
            raise NotFound(f"no schedule {schedule_id}")
        now = self._clock()
        spec = decode_spec(schedule.spec)
        active = activate(schedule, spec, self.prototype(spec, now))
        task = make_task(active, now, now)
        task.run_at, task.state = now, TaskState.QUEUED  # now: no jitter for a trigger
        task.idempotency_key = (
            None if key is None else f"tierq:schedule:{schedule_id}{TRIGGER_MARK}{key}"
        )
        fire = ScheduleFire(schedule_id, schedule.version, None, None, None, [task], trigger=True)
        _, submitted = await self.accept_fired([fire])
        return submitted[0]

    async def _changed(self, schedule_id: str) -> None:
        try:
            await self._dispatch.announce_schedules([schedule_id])
        except Exception as exc:  # the leader's next synchronisation picks the edit up
            log.warning("schedule %s: change not announced (%s)", schedule_id, exc)


def _merge(current: dict[str, Any], patch: dict[str, msgspec.Raw]) -> dict[str, Any]:
    merged = dict(current)
    values: dict[str, Any] = {key: orjson.loads(bytes(raw)) for key, raw in patch.items()}
    # A new timing replaces the other kind; an alias replaces the field it stands for.
    if "cron" in values or "cron_expression" in values or "every_seconds" in values:
        merged.pop("every_seconds", None)
        merged.pop("cron", None)
    template: dict[str, Any] = dict(merged.get("task") or {})
    for alias, target in (
        ("handler", "type"),
        ("parameters", "payload"),
        ("max_retries", "max_retries"),
    ):
        if alias in values:
            template.pop(target, None)
    task = values.pop("task", None)
    if isinstance(task, dict):
        template.update(task)
        merged["task"] = template
    elif task is not None:
        merged["task"] = task  # not an object: decoding says so, with the path
    else:
        merged["task"] = template
    merged.update(values)
    return merged

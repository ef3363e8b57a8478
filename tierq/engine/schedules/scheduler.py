"""The scheduler: on the leader only, fires every due tick of every schedule.

It holds the schedules in memory with a heap on their next tick (fed from the store when it
becomes leader, then kept current by change announcements and a periodic synchronisation),
so a pass looks only at what is due: all ticks due in one pass become one fire, one record
transaction, whatever the number of schedules. The next pass never waits for a run to start
(runs are tasks like any other; the scheduler only creates them).

Exactly once per tick rests on the store, not on the lease: a fire applies only while the
schedule still has the version and last tick it was planned from, and each tick's task has a
key derived from (schedule, tick). A refused fire means someone else moved the schedule on
(another leader, an edit): it is reloaded and planned again.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from tierq.engine.errors import EngineError, Submitted
from tierq.engine.instruments import EngineMetrics
from tierq.engine.schedules.cron import Cron, Timing
from tierq.engine.schedules.plan import Active, Decision, first_tick, plan
from tierq.engine.schedules.spec import (
    Overlap,
    ScheduleSpec,
    decode_spec,
    encode_spec,
    encode_template,
)
from tierq.engine.service import Service
from tierq.model import Schedule, ScheduleFire, Task, TaskState
from tierq.storage.leader import Leader
from tierq.storage.schedules import ScheduleStore

log = logging.getLogger("tierq.schedules")

# Schedules handled in one pass at most (the rest are due too and follow at once).
MAX_SCHEDULES_PER_PASS = 5000
# A synchronisation reads edits made since the previous one, minus this margin (clocks of
# replicas differ a little; re-reading an unchanged schedule is harmless).
SYNC_MARGIN_S = 5.0
# Skipped ticks past their retention are deleted this often (by the leader).
TRIM_EVERY_S = 3600.0

# Commits fires; returns, fire for fire, whether it applied, and each task's submission.
AcceptFired = Callable[[Sequence[ScheduleFire]], Awaitable[tuple[list[bool], list[Submitted]]]]
TaskStates = Callable[[list[str]], Awaitable[dict[str, TaskState]]]
CancelRuns = Callable[[list[str]], Awaitable[None]]
Prototype = Callable[[ScheduleSpec, float], Task]


class Shared:
    """What the schedules held in memory share: definitions that differ only in name,
    description and start (the anchor and start are kept per schedule), parsed cron
    expressions, and task prototypes of identical templates. 100,000 schedules of a few
    shapes then cost their rows and heap entries, not 100,000 parsed copies of the same
    definition (BENCHMARKS.md, "Schedules")."""

    def __init__(self) -> None:
        self._specs: dict[bytes, ScheduleSpec] = {}
        self._crons: dict[tuple[str, str], Cron] = {}
        self._prototypes: dict[bytes, Task] = {}

    def active(self, row: Schedule, prototype: Prototype, now: float) -> Active:
        spec = decode_spec(row.spec)
        timing: Timing
        if spec.cron is not None:
            key = (spec.cron, spec.timezone)
            cron = self._crons.get(key)
            if cron is None:
                cron = self._crons[key] = Cron(spec.cron, spec.timezone)
            timing = cron
        else:
            timing = spec.timing()
        template = encode_template(spec.task)
        task = self._prototypes.get(template)
        if task is None:
            task = self._prototypes[template] = prototype(spec, now)
        lean = msgspec.structs.replace(spec, name="", description=None, anchor=0.0, start_at=None)
        shared = self._specs.setdefault(encode_spec(lean), lean)
        row.spec = b""  # decoded; the store keeps the definition
        active = Active(row, shared, timing, task, spec.start_at)
        active.next_tick = first_tick(active)
        return active


class Scheduler(Service):
    name = "scheduler"

    def __init__(
        self,
        store: ScheduleStore,
        leader: Leader,
        accept: AcceptFired,
        states: TaskStates,
        cancel: CancelRuns,
        prototype: Prototype,
        instruments: EngineMetrics,
        clock: Callable[[], float],
        node_id: str,
        *,
        grace_s: float,
        renew_s: float,
        sync_s: float,
        skip_retention_s: float = 7 * 86400.0,
        pass_gap_s: float = 0.0,
    ) -> None:
        super().__init__()
        self._store = store
        self._leader = leader
        self._accept = accept
        self._states = states
        self._cancel = cancel
        self._prototype = prototype
        self._instruments = instruments
        self._clock = clock
        self._node_id = node_id
        self.grace_s = grace_s
        self._renew_s = renew_s
        self._sync_s = sync_s
        self.token: int | None = None  # the fencing token while leading
        self.active: dict[str, Active] = {}
        self._heap: list[tuple[float, str, int]] = []  # (next tick, id, version)
        self._changed: set[str] = set()
        self._resync = False
        self._renew_at = 0.0
        self._sync_at = 0.0
        self._trim_at = 0.0
        self._last_pass = 0.0
        self._pass_gap_s = pass_gap_s
        self._skip_retention_s = skip_retention_s
        self._synced_from = 0.0
        self.passes = 0  # passes that fired or skipped something (tests wait on it)
        self._shared = Shared()

    @property
    def leading(self) -> bool:
        return self.token is not None

    def changed(self, ids: list[str]) -> None:
        """Announced edits (empty: announcements may have been lost)."""
        if ids:
            self._changed.update(ids)
        else:
            self._resync = True
        self.wake()

    def next_wait(self) -> float | None:
        now = self._clock()
        wait = self._renew_at - now
        if self.token is not None:
            wait = min(wait, self._sync_at - now)
            if self._heap:
                # Due ticks wait for the pass gap since the previous pass: a stream of
                # ticks spread over time goes out in batches (one transaction each), not
                # one transaction per tick. An idle scheduler still fires a lone tick at once.
                due = max(self._heap[0][0], self._last_pass + self._pass_gap_s)
                wait = min(wait, due - now)
        return max(0.0, wait)

    async def run_once(self) -> None:
        await self.step(self._clock())

    async def step(self, now: float) -> None:
        """One pass at ``now``: keep (or take) the lease, take in edits, fire what is due."""
        if now >= self._renew_at or self.token is None:
            await self._renew(now)
        if self.token is None:
            return
        if self._resync or now >= self._sync_at:
            await self._synchronise(now)
        if self._changed:
            ids, self._changed = list(self._changed), set()
            await self._reload(ids, now)
        await self.fire_due(now)
        if now >= self._trim_at:
            self._trim_at = now + TRIM_EVERY_S
            trimmed = await self._store.trim_skips(now - self._skip_retention_s)
            if trimmed:
                log.info("scheduler: %d skipped ticks past their retention trimmed", trimmed)

    async def drain(self) -> None:
        # Handed over at once: another replica need not wait for the lease to expire.
        if self.token is not None:
            await self._leader.resign(self._node_id)
            self._lose()
        await self._leader.close()

    # ---- leadership ------------------------------------------------------------------------

    async def _renew(self, now: float) -> None:
        self._renew_at = now + self._renew_s
        token = await self._leader.acquire(self._node_id)
        if token is None:
            if self.token is not None:
                log.warning("scheduler on %s: lost the leader lease", self._node_id)
                self._lose()
            return
        if token != self.token:
            log.info("scheduler on %s: leading (token %d)", self._node_id, token)
            self.token = token
            self._synced_from = now
            self._sync_at = now + self._sync_s
            await self._load_all(now)
        self._gauges()

    def _lose(self) -> None:
        self.token = None
        self.active.clear()
        self._heap.clear()
        self._changed.clear()
        self._gauges()

    # ---- what is held ----------------------------------------------------------------------

    async def _load_all(self, now: float) -> None:
        self.active.clear()
        self._heap.clear()
        self._shared = Shared()
        for row in await self._store.load():
            self._install(row)
        heapq.heapify(self._heap)
        log.info("scheduler: %d schedules loaded", len(self.active))

    async def _synchronise(self, now: float) -> None:
        since = self._synced_from - SYNC_MARGIN_S
        self._synced_from = now
        self._sync_at = now + self._sync_s
        if self._resync:
            self._resync = False
            await self._load_all(now)
            return
        for row in await self._store.changed_since(since):
            self._replace(row)

    async def _reload(self, ids: list[str], now: float) -> None:
        rows = {row.id: row for row in await self._store.load(ids)}
        for schedule_id in ids:
            row = rows.get(schedule_id)
            if row is None:
                self.active.pop(schedule_id, None)
            else:
                self._replace(row)
        self._gauges()

    def _replace(self, row: Schedule) -> None:
        held = self.active.get(row.id)
        if (
            held is not None
            and held.row.version == row.version
            and held.row.last_tick == row.last_tick
        ):
            return
        self._install(row, push=True)

    def _install(self, row: Schedule, push: bool = False) -> None:
        try:
            active = self._shared.active(row, self._prototype, self._clock())
        except (EngineError, ValueError) as exc:
            # Valid when saved; a task type no longer registered, say. Not fired, said once.
            log.error("schedule %s (%s) cannot fire: %s", row.id, row.name, exc)
            self.active.pop(row.id, None)
            return
        self.active[row.id] = active
        if active.next_tick is not None:
            entry = (active.next_tick, row.id, row.version)
            if push:
                heapq.heappush(self._heap, entry)
            else:
                self._heap.append(entry)

    def _gauges(self) -> None:
        paused = sum(1 for a in self.active.values() if a.row.paused)
        done = sum(1 for a in self.active.values() if a.next_tick is None)
        self._instruments.schedules_held(
            len(self.active) - paused - done, paused, done, self.token is not None
        )

    # ---- firing ----------------------------------------------------------------------------

    def _due(self, now: float) -> list[Active]:
        due: list[Active] = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(due) < MAX_SCHEDULES_PER_PASS:
            tick, schedule_id, version = heapq.heappop(heap)
            active = self.active.get(schedule_id)
            # Entries of an edited schedule (or one already moved on) are stale: skipped.
            if active is None or active.row.version != version or active.next_tick != tick:
                continue
            due.append(active)
        return due

    async def fire_due(self, now: float) -> int:
        """Fire what is due at ``now``; returns the number of schedules handled."""
        due = self._due(now)
        if not due:
            return 0
        self._last_pass = now
        try:
            decisions = await self._plan(due, now)
            for decision, _ in decisions:
                if decision.cancel:
                    await self._cancel(decision.cancel)
            applied, _ = await self._accept([d.fire for d, _ in decisions])
        except BaseException:
            # Nothing was fired: the schedules go back as they were, to be tried again.
            for active in due:
                if active.next_tick is not None:
                    heapq.heappush(
                        self._heap, (active.next_tick, active.row.id, active.row.version)
                    )
            raise
        committed = self._clock()
        refused: list[str] = []
        lags: list[float] = []
        for active, (decision, following), ok in zip(due, decisions, applied, strict=True):
            if not ok:
                refused.append(active.row.id)
                continue
            self._advanced(active, decision, following)
            lags.extend(committed - t.scheduled_for for t in decision.fire.tasks if t.scheduled_for)
        self._count(decisions, applied, lags)
        if refused:
            log.info("scheduler: %d fires refused (moved on elsewhere); reloading", len(refused))
            self._changed.update(refused)
            self.wake()
        self.passes += 1
        return len(due)

    async def _plan(self, due: list[Active], now: float) -> list[tuple[Decision, float | None]]:
        wanted = [
            a.row.last_task_id
            for a in due
            if a.spec.overlap is not Overlap.ALLOW and a.row.last_task_id is not None
        ]
        states = await self._states(wanted) if wanted else {}
        return [
            plan(
                a,
                now,
                self.grace_s,
                None if a.row.last_task_id is None else states.get(a.row.last_task_id),
            )
            for a in due
        ]

    def _advanced(self, active: Active, decision: Decision, following: float | None) -> None:
        row, fire = active.row, decision.fire
        row.last_tick = fire.last_tick
        row.runs += len(fire.tasks)
        if fire.tasks:
            row.last_task_id = fire.tasks[-1].id
        row.next_fire_at = following
        active.next_tick = following
        if following is not None:
            heapq.heappush(self._heap, (following, row.id, row.version))

    def _count(
        self, decisions: list[tuple[Decision, float | None]], applied: list[bool], lags: list[float]
    ) -> None:
        fired = late = dropped = 0
        skipped: dict[str, int] = {}
        for (decision, _), ok in zip(decisions, applied, strict=True):
            if not ok:
                continue
            fired += len(decision.fire.tasks)
            late += decision.late
            dropped += decision.dropped
            for skip in decision.fire.skips:
                key = f"skipped_{skip.reason.value}"
                skipped[key] = skipped.get(key, 0) + 1
        ins = self._instruments
        ins.schedule_ticks("fired", fired)
        ins.schedule_ticks("late", late)
        ins.schedule_ticks("dropped", dropped)
        for key, n in skipped.items():
            ins.schedule_ticks(key, n)
        ins.schedule_fire_lag(lags)

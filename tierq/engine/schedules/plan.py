"""What one scheduler pass does with one due schedule: which ticks fire, which are skipped
and why, and the next tick. Pure: no I/O, the clock and the previous run's state are given.

The rules (README, "Schedules"):

- A tick is *missed* when it is more than ``grace_s`` late (nobody could fire it in time:
  no replica was up, or the leader changed). Missed ticks follow ``catchup``: ``none`` skips
  them, ``latest`` fires the latest of them when no tick on time fires in the same pass,
  ``all`` fires each. Ticks older than ``catchup_window_seconds`` are dropped unrecorded
  (counted), so a long outage costs one step, never a stop.
- A paused schedule consumes its ticks as skipped (``paused``): resuming fires the next tick
  on time, never a backlog of the pause.
- ``overlap`` looks at the previous run (the last fired task, or one fired earlier in the
  same pass): ``skip`` fires only once it is terminal; ``queue_one`` fires while it runs but
  not while it waits to start; ``replace`` cancels it if it is not terminal, then fires.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from tierq.engine.schedules.cron import FixedRate, Timing
from tierq.engine.schedules.spec import Catchup, Overlap, ScheduleSpec
from tierq.ids import new_id
from tierq.model import (
    TERMINAL_STATES,
    Schedule,
    ScheduleFire,
    ScheduleSkip,
    SkipReason,
    Task,
    TaskState,
)

# The most ticks of one schedule handled in one pass; the rest follow in the next pass.
MAX_TICKS_PER_PASS = 1000
_WAITING = frozenset({TaskState.PENDING, TaskState.SCHEDULED, TaskState.QUEUED})


@dataclass(slots=True)
class Active:
    """A schedule as the scheduler holds it: the stored row, its parsed definition, and a
    prototype of its task (validated once) that each tick copies."""

    row: Schedule
    spec: ScheduleSpec
    timing: Timing
    prototype: Task
    start_at: float | None = None  # kept here: the scheduler shares ``spec`` between schedules
    next_tick: float | None = None


@dataclass(slots=True)
class Decision:
    fire: ScheduleFire
    cancel: list[str] = field(default_factory=list)  # previous runs to cancel (replace)
    dropped: int = 0  # ticks older than the catch-up window, not recorded
    late: int = 0  # ticks fired later than the grace


def tick_key(schedule_id: str, tick: float) -> str:
    """The idempotency key of a tick's task: any leader computes the same one, so a tick
    fired twice is stored once."""
    return f"tierq:schedule:{schedule_id}:tick:{tick:.6f}"


def first_tick(active: Active) -> float | None:
    """The next tick after the last one handled (or the first of a new schedule)."""
    row, timing = active.row, active.timing
    if row.last_tick is not None:
        after = row.last_tick
    elif isinstance(timing, FixedRate):
        after = timing.anchor - 1e-3  # the anchor is tick 0
    else:
        after = row.created_at
    if active.start_at is not None:
        after = max(after, active.start_at - 1e-3)
    return bounded(active, timing.next_after(after), row.runs)


def activate(row: Schedule, spec: ScheduleSpec, prototype: Task) -> Active:
    """An Active of its own for one schedule (the API's reads; the scheduler shares pieces)."""
    active = Active(row, spec, spec.timing(), prototype, spec.start_at)
    active.next_tick = first_tick(active)
    return active


def bounded(active: Active, tick: float | None, runs: int) -> float | None:
    spec = active.spec
    if tick is None:
        return None
    if spec.end_at is not None and tick > spec.end_at:
        return None
    if spec.max_runs is not None and runs >= spec.max_runs:
        return None
    return tick


def _jitter(schedule_id: str, tick: float, jitter_s: int) -> float:
    if jitter_s <= 0:
        return 0.0
    digest = hashlib.blake2b(f"{schedule_id}:{tick:.6f}".encode(), digest_size=8).digest()
    return float(int.from_bytes(digest) % (jitter_s + 1))


def make_task(active: Active, tick: float, now: float) -> Task:
    """The task of one tick: the prototype with its own id, times and key."""
    run_at = max(now, tick + _jitter(active.row.id, tick, active.spec.jitter_seconds))
    return replace(
        active.prototype,
        id=new_id(now),
        state=TaskState.QUEUED if run_at <= now else TaskState.SCHEDULED,
        run_at=run_at,
        created_at=now,
        updated_at=now,
        idempotency_key=tick_key(active.row.id, tick),
        schedule_id=active.row.id,
        scheduled_for=tick,
        tenant=active.row.tenant,
    )


def plan(
    active: Active, now: float, grace_s: float, previous: TaskState | None
) -> tuple[Decision, float | None]:
    """The fire for the due ticks of ``active`` (its ``next_tick`` <= now), and the tick that
    follows them. ``previous`` is the state of the last fired task (None: none, or unknown)."""
    row, spec = active.row, active.spec
    fire = ScheduleFire(row.id, row.version, row.last_tick, row.last_tick, None)
    decision = Decision(fire)
    tick = active.next_tick
    runs = row.runs
    horizon = now - spec.catchup_window_seconds - grace_s
    if tick is not None and tick < horizon:
        # Beyond the window: jump, do not walk (a year of one-second ticks is one step).
        # The horizon itself becomes the last tick handled: the next one follows it.
        timing = active.timing
        if isinstance(timing, FixedRate):
            decision.dropped = int((horizon - tick) // timing.interval) + 1
        else:
            decision.dropped = 1  # at least; a cron's ticks are not walked to count them
        fire.last_tick = horizon
        tick = bounded(active, timing.next_after(horizon), runs)
    due: list[float] = []
    while tick is not None and tick <= now and len(due) < MAX_TICKS_PER_PASS:
        due.append(tick)
        tick = active.timing.next_after(tick)
    late = [t for t in due if now - t > grace_s]
    on_time = len(due) - len(late)
    fire_late: set[float]
    if spec.catchup is Catchup.ALL:
        fire_late = set(late)
    elif spec.catchup is Catchup.LATEST and late and not on_time:
        fire_late = {late[-1]}
    else:
        fire_late = set()
    state = previous
    for t in due:
        if spec.max_runs is not None and runs >= spec.max_runs:
            break
        fire.last_tick = t
        reason: SkipReason | None = None
        if row.paused:
            reason = SkipReason.PAUSED
        elif now - t > grace_s and t not in fire_late:
            reason = SkipReason.MISSED
        elif (
            spec.overlap is Overlap.SKIP and state is not None and state not in TERMINAL_STATES
        ) or (spec.overlap is Overlap.QUEUE_ONE and state in _WAITING):
            reason = SkipReason.OVERLAP
        if reason is not None:
            fire.skips.append(ScheduleSkip(row.id, t, now, reason))
            continue
        if spec.overlap is Overlap.REPLACE and state is not None and state not in TERMINAL_STATES:
            previous_id = fire.tasks[-1].id if fire.tasks else row.last_task_id
            if previous_id is not None:
                decision.cancel.append(previous_id)
        task = make_task(active, t, now)
        fire.tasks.append(task)
        if now - t > grace_s:
            decision.late += 1
        runs += 1
        state = task.state
    following = bounded(active, tick, runs)
    fire.next_fire_at = following
    return decision, following

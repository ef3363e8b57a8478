"""One pass's decision for one schedule (engine/schedules/plan.py): catch-up, grace, window,
overlap, pause, limits, jitter. Pure: no store, the clock and the previous run are given."""

from __future__ import annotations

from typing import Any

import msgspec

from tierq.engine.schedules.plan import Active, activate, first_tick, plan, tick_key
from tierq.engine.schedules.spec import Catchup, Overlap, ScheduleSpec, TaskTemplate
from tierq.model import Schedule, SkipReason, Task, TaskState

T0 = 1_800_000_000.0
GRACE = 5.0


def active(
    *, every: int | None = 60, cron: str | None = None, last_tick: float | None = None, **spec: Any
) -> Active:
    definition = ScheduleSpec(
        name="s",
        task=TaskTemplate(type="noop", payload=msgspec.Raw(b"{}")),
        anchor=T0,
        cron=cron,
        every_seconds=None if cron else every,
        **spec,
    )
    row = Schedule(
        id="01a00000-0000-7000-8000-000000000001",
        name="s",
        spec=b"{}",
        paused=False,
        version=3,
        created_at=T0,
        updated_at=T0,
        last_tick=last_tick,
    )
    prototype = Task("p", "noop", "default", 5, b"{}", TaskState.QUEUED, T0, T0, T0, 3, 60.0)
    return activate(row, definition, prototype)


def ticks(decision: Any) -> list[float]:
    return [t.scheduled_for for t in decision.fire.tasks]


def skipped(decision: Any) -> list[tuple[float, SkipReason]]:
    return [(s.tick, s.reason) for s in decision.fire.skips]


def test_a_fixed_rate_starts_at_its_anchor_and_fires_on_time() -> None:
    a = active()
    assert a.next_tick == T0
    decision, following = plan(a, T0 + 0.2, GRACE, None)
    assert ticks(decision) == [T0]
    assert following == T0 + 60
    task = decision.fire.tasks[0]
    assert task.idempotency_key == tick_key(a.row.id, T0)
    assert task.schedule_id == a.row.id and task.state is TaskState.QUEUED
    assert decision.fire.version == 3 and decision.fire.expected_last_tick is None
    assert decision.fire.last_tick == T0 and decision.fire.next_fire_at == T0 + 60


def test_catchup_latest_fires_one_run_for_the_missed_ticks() -> None:
    a = active(last_tick=T0)
    a.next_tick = first_tick(a)
    decision, following = plan(a, T0 + 600.5, GRACE, None)  # 10 ticks missed
    assert ticks(decision) == [T0 + 600]  # on time (within grace): fires; the 9 late skipped
    assert [r for _, r in skipped(decision)] == [SkipReason.MISSED] * 9
    decision, _ = plan(a, T0 + 630, GRACE, None)  # the latest missed is late too
    assert ticks(decision) == [T0 + 600]
    assert len(skipped(decision)) == 9
    assert following == T0 + 660


def test_catchup_all_and_none() -> None:
    a = active(last_tick=T0, catchup=Catchup.ALL)
    a.next_tick = first_tick(a)
    decision, _ = plan(a, T0 + 630, GRACE, None)
    assert ticks(decision) == [T0 + 60 * n for n in range(1, 11)]
    assert decision.late == 10
    a = active(last_tick=T0, catchup=Catchup.NONE)
    a.next_tick = first_tick(a)
    decision, following = plan(a, T0 + 630, GRACE, None)
    assert ticks(decision) == []
    assert len(skipped(decision)) == 10 and following == T0 + 660
    assert decision.fire.last_tick == T0 + 600


def test_ticks_beyond_the_window_are_dropped_in_one_step() -> None:
    # A year of one-second ticks missed: one pass, bounded work, and the schedule goes on.
    a = active(every=1, last_tick=T0, catchup=Catchup.ALL, catchup_window_seconds=10)
    a.next_tick = first_tick(a)
    now = T0 + 365 * 86400
    decision, following = plan(a, now, GRACE, None)
    assert decision.dropped > 31_000_000
    # The ticks of (now - window - grace, now]: 15 of them.
    assert len(decision.fire.tasks) == 15
    assert decision.dropped == 365 * 86400 - 15
    assert min(ticks(decision)) >= now - 10 - GRACE
    assert following == now + 1


def test_overlap_policies_look_at_the_previous_run() -> None:
    for policy, previous, fires in [
        (Overlap.SKIP, TaskState.RUNNING, False),
        (Overlap.SKIP, TaskState.QUEUED, False),
        (Overlap.SKIP, TaskState.SUCCEEDED, True),
        (Overlap.SKIP, None, True),
        (Overlap.QUEUE_ONE, TaskState.RUNNING, True),
        (Overlap.QUEUE_ONE, TaskState.QUEUED, False),
        (Overlap.QUEUE_ONE, TaskState.FAILED, True),
        (Overlap.ALLOW, TaskState.RUNNING, True),
    ]:
        a = active(overlap=policy)
        decision, _ = plan(a, T0 + 1, GRACE, previous)
        assert bool(decision.fire.tasks) is fires, (policy, previous)
        if not fires:
            assert skipped(decision) == [(T0, SkipReason.OVERLAP)]


def test_replace_cancels_the_previous_run_and_fires() -> None:
    a = active(overlap=Overlap.REPLACE)
    a.row.last_task_id = "previous"
    decision, _ = plan(a, T0 + 1, GRACE, TaskState.RUNNING)
    assert decision.cancel == ["previous"] and ticks(decision) == [T0]
    decision, _ = plan(a, T0 + 1, GRACE, TaskState.SUCCEEDED)
    assert decision.cancel == []


def test_skip_overlap_within_one_pass_fires_only_the_first() -> None:
    a = active(last_tick=T0, catchup=Catchup.ALL, overlap=Overlap.SKIP)
    a.next_tick = first_tick(a)
    decision, _ = plan(a, T0 + 180.5, GRACE, TaskState.SUCCEEDED)
    assert ticks(decision) == [T0 + 60]
    assert [r for _, r in skipped(decision)] == [SkipReason.OVERLAP] * 2


def test_paused_schedules_consume_their_ticks_as_skipped() -> None:
    a = active()
    a.row.paused = True
    decision, following = plan(a, T0 + 0.5, GRACE, None)
    assert ticks(decision) == [] and skipped(decision) == [(T0, SkipReason.PAUSED)]
    assert following == T0 + 60


def test_max_runs_and_end_at_end_the_schedule() -> None:
    a = active(max_runs=2, catchup=Catchup.ALL)
    decision, following = plan(a, T0 + 300, 1000.0, None)
    assert ticks(decision) == [T0, T0 + 60] and following is None
    assert decision.fire.last_tick == T0 + 60  # the ticks after the last run are not handled
    a = active(end_at=T0 + 120)
    decision, following = plan(a, T0 + 1, GRACE, None)
    _, following = plan(a, T0 + 120, 1000.0, None)
    assert following is None


def test_start_at_and_cron_first_tick() -> None:
    a = active(cron="0 * * * *", start_at=T0 + 7200)
    assert a.next_tick == T0 + 7200  # T0 is a whole hour; start_at itself matches
    a = active(cron="*/5 * * * * *")
    assert a.next_tick == T0 + 5  # a cron's first tick is after the schedule was made


def test_jitter_is_deterministic_and_bounded() -> None:
    a = active(jitter_seconds=30)
    first, _ = plan(a, T0, GRACE, None)
    again, _ = plan(a, T0, GRACE, None)
    run_at = first.fire.tasks[0].run_at
    assert run_at == again.fire.tasks[0].run_at  # any leader computes the same
    assert T0 <= run_at <= T0 + 30
    assert first.fire.tasks[0].scheduled_for == T0

"""The task state machine: properties of the table in model.py, and a randomised run of a real
engine whose every observed state change must be allowed (or reachable) through that table."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierq.api.app import build_engine
from tierq.engine.engine import Engine
from tierq.engine.errors import Conflict
from tierq.engine.handlers import close_registry
from tierq.metrics import Metrics
from tierq.model import (
    ALL_STATES,
    ALLOWED_TRANSITIONS,
    LIVE_STATES,
    TERMINAL_STATES,
    DependencyRelease,
    Task,
    TaskState,
    Transition,
    transition_allowed,
)

from .conftest import engine_settings, make_task, wait_for

states = st.sampled_from(ALL_STATES)


def collapse(history: list[TaskState]) -> list[TaskState]:
    """The history without repeats of the same state in a row."""
    return [s for i, s in enumerate(history) if i == 0 or history[i - 1] is not s]


def is_subsequence(part: list[TaskState], whole: list[TaskState]) -> bool:
    rest = iter(whole)
    return all(any(s is w for w in rest) for s in part)


def reachable(old: TaskState, new: TaskState) -> bool:
    """``new`` can follow ``old`` through one or more allowed transitions."""
    seen: set[TaskState] = set()
    frontier = set(ALLOWED_TRANSITIONS[old])
    while frontier:
        state = frontier.pop()
        if state is new:
            return True
        seen.add(state)
        frontier |= ALLOWED_TRANSITIONS[state] - seen
    return False


# ---- the table ------------------------------------------------------------------------------


def test_table_covers_every_state() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(ALL_STATES)
    assert set(ALL_STATES) == TERMINAL_STATES | LIVE_STATES
    assert not TERMINAL_STATES & LIVE_STATES


@given(old=states, new=states)
def test_transition_allowed_matches_table(old: TaskState, new: TaskState) -> None:
    assert transition_allowed(old, new) == (new in ALLOWED_TRANSITIONS[old])
    assert old not in ALLOWED_TRANSITIONS[old]  # a state change is a change


@given(old=st.sampled_from(sorted(TERMINAL_STATES)), new=states)
def test_terminal_states_leave_only_by_retry_to_queued(old: TaskState, new: TaskState) -> None:
    assert old.terminal
    if transition_allowed(old, new):
        assert new is TaskState.QUEUED
    assert not transition_allowed(TaskState.SUCCEEDED, new)  # success is final


@given(old=st.sampled_from(sorted(LIVE_STATES)))
def test_every_live_state_can_end(old: TaskState) -> None:
    assert not old.terminal
    assert any(reachable(old, end) for end in TERMINAL_STATES)
    assert reachable(old, TaskState.CANCELLED)  # a user can always stop a live task


def test_reachable_refuses_what_the_table_forbids() -> None:
    assert not reachable(TaskState.SUCCEEDED, TaskState.QUEUED)
    assert not reachable(TaskState.SCHEDULED, TaskState.PENDING)
    assert reachable(TaskState.PENDING, TaskState.SUCCEEDED)


# ---- a real engine under random operations --------------------------------------------------


@dataclass(frozen=True)
class Submit:
    sleep_ms: int
    fail_times: int
    max_retries: int
    dep: int | None  # index of an earlier task to depend on


@dataclass(frozen=True)
class Cancel:
    index: int


@dataclass(frozen=True)
class Retry:
    index: int


@dataclass(frozen=True)
class Pause:
    ms: int


Op = Submit | Cancel | Retry | Pause

ops = st.lists(
    st.one_of(
        st.builds(
            Submit,
            st.integers(0, 5),
            st.integers(0, 2),
            st.integers(0, 2),
            st.none() | st.integers(0, 50),
        ),
        st.builds(Cancel, st.integers(0, 50)),
        st.builds(Retry, st.integers(0, 50)),
        st.builds(Pause, st.integers(0, 8)),
    ),
    min_size=1,
    max_size=30,
)


async def _drive(engine: Engine, script: list[Op]) -> None:
    ids: list[str] = []
    observed: dict[str, list[TaskState]] = {}
    written: dict[str, list[TaskState]] = {}

    # Every transition the engine hands the flusher, in order (exact, not sampled).
    add = engine.flusher.add

    def record(transition: Transition, ack: object = None) -> None:
        written_state(transition.task_id, transition.state)
        add(transition, ack)  # type: ignore[arg-type]

    engine.flusher.add = record  # type: ignore[method-assign]

    # ... and every change made in the record store directly (retry, cancel of a task this
    # process does not hold, dependency release, claim of a due scheduled task).
    store = engine.store

    def written_state(task_id: str, state: TaskState) -> None:
        history = written.setdefault(task_id, [])
        if not history or history[-1] is not state:
            history.append(state)

    retry_many, cancel_many = store.task_retry_many, store.task_cancel_many
    release, claim = store.task_release_dependents, store.task_claim

    async def on_retry(ids_: Sequence[str], now: float) -> list[str]:
        changed = await retry_many(ids_, now)
        for task_id in changed:
            written_state(task_id, TaskState.QUEUED)
        return changed

    async def on_cancel(ids_: Sequence[str], now: float) -> list[str]:
        changed = await cancel_many(ids_, now)
        for task_id in changed:
            written_state(task_id, TaskState.CANCELLED)
        return changed

    async def on_release(ids_: Sequence[str], now: float) -> DependencyRelease:
        result = await release(ids_, now)
        for task in result.ready:
            written_state(task.id, task.state)
        for task_id in result.cancelled:
            written_state(task_id, TaskState.CANCELLED)
        return result

    async def on_claim(
        owner: str, limit: int, now: float, horizon: float, skip_queues: Sequence[str] = ()
    ) -> list[Task]:
        claimed = await claim(owner, limit, now, horizon, skip_queues)
        for task in claimed:
            written_state(task.id, task.state)
        return claimed

    store.task_retry_many = on_retry  # type: ignore[method-assign]
    store.task_cancel_many = on_cancel  # type: ignore[method-assign]
    store.task_release_dependents = on_release  # type: ignore[method-assign]
    store.task_claim = on_claim  # type: ignore[method-assign]

    def note(task_id: str, state: TaskState) -> None:
        seen = observed.setdefault(task_id, [])
        if not seen or seen[-1] is not state:
            seen.append(state)

    async def poll() -> None:
        while True:
            for task_id in list(ids):
                note(task_id, (await engine.get(task_id)).state)
            await asyncio.sleep(0.001)

    poller = asyncio.create_task(poll())
    try:
        for op in script:
            if isinstance(op, Submit):
                fields: dict[str, object] = {"max_retries": op.max_retries}
                if op.dep is not None and ids:
                    fields["depends_on"] = [ids[op.dep % len(ids)]]
                task = make_task(
                    engine,
                    "dummy",
                    {"sleep_ms": op.sleep_ms, "fail_times": op.fail_times},
                    **fields,
                )
                (result,) = await engine.submit_many([task])
                ids.append(result.task.id)
                note(result.task.id, result.task.state)
                written.setdefault(result.task.id, []).insert(0, task.state)
            elif isinstance(op, Cancel | Retry) and ids:
                task_id = ids[op.index % len(ids)]
                with contextlib.suppress(Conflict):
                    if isinstance(op, Cancel):
                        note(task_id, (await engine.cancel(task_id)).state)
                    else:
                        note(task_id, (await engine.retry(task_id)).state)
            elif isinstance(op, Pause):
                await asyncio.sleep(op.ms / 1000)

        async def all_terminal() -> bool:
            await engine.flusher.run_once()
            stored = {t.id: t.state for t in await engine.store.task_get_many(ids)}
            live = [(await engine.get(i)).state for i in ids]
            return all(s.terminal for s in live) and all(
                stored.get(i, TaskState.PENDING).terminal for i in ids
            )

        await wait_for(all_terminal, timeout=10.0)
        for task_id in ids:
            note(task_id, (await engine.get(task_id)).state)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller

    for task_id in ids:
        # Every state a reader saw was written, in the order written: the observed history
        # (polls skip states, never invent or reorder them) is a subsequence of the written
        # one, so a cancelled task later reading succeeded fails unless a retry was written
        # in between.
        seen, exact = collapse(observed[task_id]), collapse(written[task_id])
        assert is_subsequence(seen, exact), f"{task_id}: observed {seen} written {exact}"
        exact = written[task_id]
        for old, new in itertools.pairwise(exact):
            assert old is new or transition_allowed(old, new), (
                f"{task_id}: written {exact} observed {observed[task_id]}"
            )
        assert observed[task_id][-1].terminal


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(script=ops)
async def test_random_operations_follow_the_table(
    script: list[Submit | Cancel | Retry | Pause],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(
            engine_settings(
                Path(tmp), workers=3, retry_base_ms=1, retry_max_ms=5, shutdown_grace_s=1.0
            ),
            Metrics(),
        )
        await engine.start()
        try:
            await _drive(engine, script)
        finally:
            try:
                await engine.stop()
            finally:
                await close_registry(engine.registry)

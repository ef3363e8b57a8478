"""The worker pool's share of the event loop: tasks that never await must not fill a loop
iteration, or every request waits through it (several times per request)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tierq.engine import workers
from tierq.engine.handlers.base import TaskContext
from tierq.model import TaskState

from .conftest import EngineFactory, make_task, submit, wait_all


async def test_at_most_turn_tasks_start_per_loop_iteration(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "TURN_TASKS", 8)
    # 16 workers that each yielded every 4 tasks started up to 64 per iteration.
    engine = await make_engine(workers=16)
    loop = asyncio.get_running_loop()
    iteration = 0

    def count_iterations() -> None:
        # Rescheduled from inside a callback, it runs exactly once per loop iteration.
        nonlocal iteration
        iteration += 1
        loop.call_soon(count_iterations)

    starts: Counter[int] = Counter()

    async def instant(ctx: TaskContext) -> None:
        starts[iteration] += 1

    engine.registry.register("instant", instant, instant=True)
    loop.call_soon(count_iterations)
    ids = await submit(engine, *(make_task(engine, "instant") for _ in range(400)))
    await wait_all(engine, ids, TaskState.SUCCEEDED)
    assert sum(starts.values()) == 400
    assert max(starts.values()) <= 8, starts.most_common(3)
    # The budget is used, not just respected: most iterations that ran tasks ran a full turn.
    assert sum(1 for n in starts.values() if n == 8) >= 400 // 8 // 2

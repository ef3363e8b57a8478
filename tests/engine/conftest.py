"""A real engine on a real SQLite file in ``tmp_path``, and helpers to build and await tasks.

``make_engine(**settings)`` starts an engine (stopped at teardown if the test did not stop it);
``wait_for`` polls a condition within a bounded time, so no test asserts on a bare sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

# Re-exported: the tests import them from here.
from tests.helpers import make_task, submit, wait_for  # noqa: F401
from tierq.api.app import build_engine
from tierq.config import Settings, from_mapping
from tierq.engine.engine import Engine
from tierq.engine.handlers import close_registry
from tierq.metrics import Metrics
from tierq.model import Task, TaskState

EngineFactory = Callable[..., Awaitable[Engine]]


def engine_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "sqlite:///" + str(tmp_path / "t.db"),
        "workers": 4,
        "sqlite_synchronous": "NORMAL",
        "flush_interval_ms": 5.0,
        "commit_window_ms": 1.0,
        "retry_base_ms": 10,
        "retry_max_ms": 50,
        "shutdown_grace_s": 2.0,
    }
    values.update(overrides)
    return from_mapping(values)


@pytest.fixture
async def make_engine(tmp_path: Path) -> AsyncIterator[EngineFactory]:
    started: list[Engine] = []

    async def factory(**overrides: Any) -> Engine:
        engine = build_engine(engine_settings(tmp_path, **overrides), Metrics())
        await engine.start()
        started.append(engine)
        return engine

    try:
        yield factory
    finally:
        for engine in started:
            try:
                await engine.stop()  # a no-op for an engine the test already stopped
            finally:
                await close_registry(engine.registry)


async def wait_state(
    engine: Engine, task_id: str, *states: TaskState, timeout: float = 10.0
) -> Task:
    async def reached() -> bool:
        return (await engine.get(task_id)).state in states

    await wait_for(reached, timeout)
    return await engine.get(task_id)


async def wait_all(engine: Engine, ids: list[str], state: TaskState, timeout: float = 20.0) -> None:
    """Every task in ``ids`` reached ``state`` in the record store (not just in memory)."""

    async def done() -> bool:
        await engine.flusher.run_once()
        found = await engine.store.task_get_many(ids)
        return len(found) == len(ids) and all(t.state is state for t in found)

    await wait_for(done, timeout, every=0.05)

"""Helpers shared by the engine-level test suites (embedded and distributed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson
import pytest

from tierq.api.schemas import TaskIn, to_task
from tierq.engine.engine import Engine
from tierq.engine.model import Task


def make_task(engine: Engine, type: str = "noop", payload: Any = None, **fields: Any) -> Task:
    """A task built the way the API builds one (validation, id, state, times)."""
    raw = msgspec.Raw(orjson.dumps({} if payload is None else payload))
    spec = TaskIn(type=type, payload=raw, **fields)
    return to_task(spec, "$", engine.settings, engine.registry, engine.clock())


async def submit(engine: Engine, *tasks: Task) -> list[str]:
    results = await engine.submit_many(list(tasks))
    return [r.task.id for r in results]


async def wait_for(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, every: float = 0.01
) -> None:
    """Poll ``condition`` until true; fail the test if it is still false after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(every)

"""The ``noop`` and ``dummy`` task types: for tests, demos and load tests.

``dummy`` payload: ``sleep_ms`` (int >= 0, default 0), ``fail_times`` (int >= 0, default 0:
attempts 1..fail_times fail), ``fail_always`` (bool), ``result`` (any JSON, returned on success).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tierq.engine.handlers import payload as p
from tierq.engine.handlers.base import (
    Handler,
    HandlerRegistry,
    PayloadError,
    PermanentError,
    TaskContext,
    TaskError,
)

DUMMY_FIELDS = ("sleep_ms", "fail_times", "fail_always", "result")


async def noop(ctx: TaskContext) -> None:
    # Must never await: the handler is registered ``instant`` and runs without a timeout timer.
    return None


def validate_dummy(payload: Any) -> None:
    body = p.obj(payload, DUMMY_FIELDS, allow_null=True)
    p.non_negative_int(body, "sleep_ms")
    p.non_negative_int(body, "fail_times")
    p.boolean(body, "fail_always")


async def dummy(ctx: TaskContext) -> Any:
    try:
        validate_dummy(ctx.payload)
    except PayloadError as exc:  # stored before validation existed, or submitted around it
        raise PermanentError(str(exc)) from None
    body: dict[str, Any] = ctx.payload or {}
    sleep_ms = body.get("sleep_ms", 0)
    if sleep_ms:
        await asyncio.sleep(sleep_ms / 1000)  # cancellable: the engine's timeout interrupts it
    if body.get("fail_always", False):
        raise TaskError("dummy: fail_always is set")
    fail_times = body.get("fail_times", 0)
    if ctx.attempt <= fail_times:
        raise TaskError(f"dummy: attempt {ctx.attempt} of {fail_times} planned failures")
    return body.get("result")


def register_builtins(registry: HandlerRegistry) -> None:
    registry.add(Handler(name="noop", run=noop, instant=True))
    registry.add(Handler(name="dummy", run=dummy, validate=validate_dummy))

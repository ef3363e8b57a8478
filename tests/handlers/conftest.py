from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tierq.engine.handlers.base import TaskContext

MakeCtx = Callable[..., TaskContext]


@pytest.fixture
def make_ctx() -> MakeCtx:
    def make(type_: str, payload: Any, attempt: int = 1) -> TaskContext:
        return TaskContext(
            task_id="t-1",
            type=type_,
            queue="default",
            attempt=attempt,
            payload_json=orjson.dumps(payload),
            deadline=asyncio.get_running_loop().time() + 60,
        )

    return make

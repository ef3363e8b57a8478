"""What a handler is, and the registry the engine looks task types up in.

A handler is an async function (or a plain function, run in a worker thread) taking a
``TaskContext`` and returning something JSON-serialisable (the task's result). Raising fails
the attempt (retried with backoff); raising ``PermanentError`` fails the task at once.
A handler may declare ``validate(payload)`` to reject bad payloads at submit time (422).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import orjson


class TaskError(Exception):
    """The attempt failed; the task is retried while it has attempts left."""


class PermanentError(TaskError):
    """The task cannot succeed (bad input, refused target): no more attempts."""


class Unavailable(TaskError):
    """What the task calls is unavailable (a 5xx, a timeout, a refused connection): retried
    like any failure, and counted against the task's circuit breaker. Other failures are the
    task's own (bad data, a bug) and never open a breaker; so are PermanentErrors, unless
    ``breaker_count_client_errors``. A handler's own ``ConnectionError`` or ``TimeoutError``
    counts too."""


class RetryLater(TaskError):
    """The attempt failed and the next one must wait ``delay_s`` (a receiver's Retry-After,
    or a handler's own backoff) instead of the engine's retry policy. ``unavailable``: the
    failure counts against the circuit breaker (see ``Unavailable``)."""

    def __init__(self, message: str, delay_s: float, unavailable: bool = False) -> None:
        super().__init__(message)
        self.delay_s = max(0.0, delay_s)
        self.unavailable = unavailable


class PayloadError(ValueError):
    """A payload does not fit its handler. ``path`` names the field, e.g. ``payload.url``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(slots=True)
class TaskContext:
    task_id: str
    type: str
    queue: str
    attempt: int
    payload_json: bytes
    deadline: float  # loop.time() by which the handler must be done
    # Threads for plain (sync) handlers, sized to the engine's workers; None = asyncio's
    # default pool (a handful of threads, shared with DNS lookups).
    executor: Executor | None = field(default=None, repr=False)
    # The X-Request-ID of the request that submitted the task (None: not submitted by one).
    request_id: str | None = None
    _payload: Any = field(default=None, repr=False)
    _decoded: bool = field(default=False, repr=False)

    @property
    def payload(self) -> Any:
        if not self._decoded:
            self._payload = orjson.loads(self.payload_json)
            self._decoded = True
        return self._payload

    def time_left(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())


HandlerFn = Callable[[TaskContext], Awaitable[Any]]
Validator = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    run: HandlerFn
    validate: Validator | None = None
    # Returns without awaiting anything and cannot overrun: the engine skips the timeout timer.
    instant: bool = False


def as_async(fn: Callable[..., Any]) -> HandlerFn:
    """Wrap a plain function so it runs in a worker thread (it cannot be interrupted there:
    on timeout the attempt fails, the thread runs to its end in the background)."""
    if inspect.iscoroutinefunction(fn):
        return fn

    @functools.wraps(fn)
    async def run_in_thread(ctx: TaskContext) -> Any:
        return await asyncio.get_running_loop().run_in_executor(ctx.executor, fn, ctx)

    return run_in_thread


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        # The ``external`` type's waiting attempts (handlers/external.py), when registered.
        self.external: Any = None

    def add(self, handler: Handler) -> None:
        if handler.name in self._handlers:
            raise ValueError(f"task type {handler.name!r} is registered twice")
        self._handlers[handler.name] = handler

    def register(
        self,
        name: str,
        fn: Callable[..., Any],
        validate: Validator | None = None,
        instant: bool = False,
    ) -> None:
        self.add(Handler(name=name, run=as_async(fn), validate=validate, instant=instant))

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

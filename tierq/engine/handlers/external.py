"""The ``external`` task type: the work is done outside tierq, by a worker that learns of the
task (the event stream, or ``GET /api/v1/tasks?type=external&status=running``) and reports
its outcome with ``PUT /api/v1/tasks/{id}/status?status=COMPLETED`` (or ``FAILED``).

The attempt holds its lease and waits for the report, until its ``timeout_seconds``: then it
times out and is retried like any attempt, and a late report for the old attempt is refused
(the attempt number is the fencing token). A report reaches the replica running the attempt
directly when the request landed there, else through the dispatch tier's announcement.

What must stay true: a report finishes only the attempt it names, once; nothing here blocks
the loop or outlives the attempt that waits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from tierq.engine.handlers.base import TaskContext, TaskError

log = logging.getLogger("tierq.engine")
TYPE = "external"


class Report(msgspec.Struct, frozen=True):
    task_id: str
    attempt: int
    succeeded: bool
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    error: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Report).decode


class ExternalWork:
    def __init__(self) -> None:
        # (task id, attempt) -> the future its waiting attempt awaits (made in the loop).
        self._waiting: dict[tuple[str, int], asyncio.Future[Report]] = {}

    async def run(self, ctx: TaskContext) -> Any:
        key = (ctx.task_id, ctx.attempt)
        waiting: asyncio.Future[Report] = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiting
        try:
            report = await waiting  # the engine's timeout (or a cancel) interrupts it
        finally:
            self._waiting.pop(key, None)
        if not report.succeeded:
            raise TaskError(report.error or "the external worker reported a failure")
        return msgspec.json.decode(report.result)

    def deliver(self, report: Report) -> bool:
        """Finish the attempt the report names, if it waits here; whether it did."""
        waiting = self._waiting.get((report.task_id, report.attempt))
        if waiting is None or waiting.done():
            return False
        waiting.set_result(report)
        return True

    def on_announced(self, message: bytes) -> None:
        """A report announced by another replica (ignored unless its attempt waits here)."""
        try:
            self.deliver(_decode(message))
        except msgspec.DecodeError:
            log.warning("an announced report could not be read; ignored")

    @staticmethod
    def encode(report: Report) -> bytes:
        return _encode(report)

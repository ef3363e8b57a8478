"""Outcomes reported from outside: ``PUT /api/v1/tasks/{id}/status`` for a running task of
the ``external`` type (handlers/external.py). Checked against the record (running, this
attempt: the fencing token), delivered to the attempt where it waits (here, or announced to
every replica), then answered with the task once it has ended, or as it is after a short
wait."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from tierq.engine.errors import Conflict
from tierq.engine.handlers.external import TYPE, ExternalWork, Report
from tierq.model import TERMINAL_STATES, Task, TaskState

if TYPE_CHECKING:
    from tierq.engine.engine import Engine

ANSWER_WAIT_S = 5.0  # how long the report's answer waits for the task to end


async def report_outcome(engine: Engine, report: Report, tenant: str | None) -> tuple[Task, bool]:
    """The task after the report, and whether it has ended. Conflict (409) unless the task
    is an ``external`` one running the reported attempt (0: whichever is current)."""
    task = await engine.get(report.task_id, tenant)
    if task.type != TYPE:
        raise Conflict(f"only tasks of type {TYPE!r} are reported from outside", task.state)
    if task.state is not TaskState.RUNNING:
        raise Conflict(f"task is {task.state.value}, not running", task.state)
    if report.attempt == 0:
        report = msgspec.structs.replace(report, attempt=task.attempt)
    elif report.attempt != task.attempt:
        raise Conflict(
            f"attempt {report.attempt} is not the current attempt ({task.attempt})", task.state
        )
    work: ExternalWork = engine.registry.external
    if not work.deliver(report) and engine.distributed:
        await engine.dispatch.announce_report(ExternalWork.encode(report))
    ended = await engine.wait_finished(report.task_id, ANSWER_WAIT_S, tenant)
    return ended, ended.state in TERMINAL_STATES

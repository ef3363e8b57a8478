"""``PUT /api/v1/tasks/{task_id}/status?status=COMPLETED`` (seed 001): a worker outside tierq
reports the outcome of a running ``external`` task (engine/outside.py)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from tierq.api.auth.access import AUDIT_RESOURCE
from tierq.api.errors import ApiError
from tierq.api.permissions import Permission
from tierq.api.routes import ENGINE, json_response, scope, task_id_param
from tierq.api.routing import Param, Route
from tierq.api.schemas import decode_as, task_out
from tierq.api.shapes import TaskOut
from tierq.engine.handlers.external import Report
from tierq.engine.outside import report_outcome

_OUTCOMES = {"COMPLETED": True, "SUCCEEDED": True, "FAILED": False}


class OutcomeIn(msgspec.Struct, forbid_unknown_fields=True):
    """What the worker returns: a result (any JSON) when it completed, an error when not."""

    result: Any = None
    error: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None


_outcome_in = msgspec.json.Decoder(OutcomeIn)


async def report_status(request: web.Request) -> web.Response:
    task_id = task_id_param(request)
    # Another tenant's task is not found, whatever else the request gets wrong.
    await request.app[ENGINE].get(task_id, scope(request))
    status = (request.query.get("status") or "").upper()
    if status not in _OUTCOMES:
        raise ApiError(
            400,
            "bad_parameter",
            f"status must be one of {', '.join(_OUTCOMES)}",
            {"parameter": "status"},
        )
    raw_attempt = request.query.get("attempt") or "0"
    if not (raw_attempt.isascii() and raw_attempt.isdigit() and len(raw_attempt) < 10):
        raise ApiError(
            400, "bad_parameter", "attempt must be a positive integer", {"parameter": "attempt"}
        )
    body = await request.read()
    if body and request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    outcome = decode_as(_outcome_in, body) if body else OutcomeIn()
    report = Report(
        task_id,
        int(raw_attempt),
        _OUTCOMES[status],
        msgspec.Raw(msgspec.json.encode(outcome.result)),
        outcome.error,
    )
    request[AUDIT_RESOURCE] = task_id
    task, ended = await report_outcome(request.app[ENGINE], report, scope(request))
    return json_response(task_out(task), 200 if ended else 202)


ROUTES = [
    Route(
        "PUT",
        "/api/v1/tasks/{task_id}/status",
        report_status,
        Permission.TASKS_OPERATE,
        "Report the outcome of a running external task (an outside worker's call)",
        body=OutcomeIn,
        body_required=False,
        answers=((200, TaskOut), (202, TaskOut)),
        params=(
            Param("status", str, "COMPLETED (or SUCCEEDED) or FAILED", required=True),
            Param("attempt", int, "the attempt reported (fencing; default: the current one)"),
        ),
        description="200 with the task once it has ended; 202 when it has not yet (a failed "
        "attempt to be retried, or a report still on its way to the replica running it). "
        "409 unless the task is of type external and running that attempt.",
    ),
]

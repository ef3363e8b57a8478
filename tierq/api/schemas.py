"""Request and response shapes of API v1.

A request body is decoded once, straight into typed structs (msgspec): types, ranges and
unknown fields are checked by the decoder and reported with the JSON path of the offending
field. What a type system cannot say is the engine's to check (``tierq.engine.intake``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from tierq.engine.errors import FieldError
from tierq.engine.intake import TaskIn
from tierq.model import Event, Execution, Task

_single_decoder = msgspec.json.Decoder(TaskIn)
_batch_decoder = msgspec.json.Decoder(list[TaskIn])
_PATH_RE = re.compile(r" - at `([^`]*)`$")


def decode_tasks(body: bytes, batch: bool) -> list[TaskIn]:
    """Decode a request body; raise FieldError (with path) or msgspec.DecodeError."""
    try:
        if batch:
            return _batch_decoder.decode(body)
        return [_single_decoder.decode(body)]
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH_RE.search(text)
        path = match.group(1) if match else "$"
        message = text[: match.start()] if match else text
        raise FieldError(path, message) from None


_MIN_TS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def iso(ts: float | None) -> str | None:
    """ISO 8601 in UTC. Never raises: a stored time outside what datetime can show (written
    before run_at was bounded, or by hand) is clamped, NaN is shown as null, so one odd row
    cannot make every read of its task fail."""
    if ts is None or ts != ts:
        return None
    ts = min(max(ts, _MIN_TS), _MAX_TS)
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_out(task: Task) -> dict[str, Any]:
    # A new task's run_at and updated_at are usually its created_at: formatted once.
    created = iso(task.created_at)
    return {
        "id": task.id,
        "type": task.type,
        "queue": task.queue,
        "priority": task.priority,
        "status": task.state.value,
        "payload": msgspec.Raw(task.payload),
        "result": None if task.result is None else msgspec.Raw(task.result),
        "attempt": task.attempt,
        "max_retries": task.max_retries,
        "attempts_left": max(0, task.attempts_left),
        "timeout_seconds": task.timeout_s,
        "run_at": created if task.run_at == task.created_at else iso(task.run_at),
        "created_at": created,
        "updated_at": created if task.updated_at == task.created_at else iso(task.updated_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "name": task.name,
        "description": task.description,
        "idempotency_key": task.idempotency_key,
        "depends_on": list(task.depends_on),
        "last_error": task.last_error,
        "lease_owner": task.lease_owner,  # the replica holding its lease (none when free)
    }


def execution_out(execution: Execution) -> dict[str, Any]:
    duration = None
    if execution.started_at is not None and execution.finished_at is not None:
        duration = round(execution.finished_at - execution.started_at, 6)
    return {
        "attempt": execution.attempt,
        "started_at": iso(execution.started_at),
        "finished_at": iso(execution.finished_at),
        "duration_seconds": duration,
        "outcome": None if execution.outcome is None else execution.outcome.value,
        "error": execution.error,
        "worker": execution.worker,
    }


def event_out(event: Event) -> dict[str, Any]:
    """An event as the stream and the event pages show it (the log's JSON, times in ISO)."""
    out: dict[str, Any] = {
        "cursor": event.cursor,
        "event": event.event,
        "at": iso(event.at),
        "task_id": event.task_id or None,
        "queue": event.queue or None,
        "type": event.type or None,
        "priority": event.priority,
        "attempt": event.attempt,
        "node": event.node,
        "tenant": event.tenant,
    }
    if event.error is not None:
        out["error"] = event.error
    if event.duration_s is not None:
        out["duration_seconds"] = event.duration_s
    if event.retry_at is not None:
        out["retry_at"] = iso(event.retry_at)
    if event.subscription_id is not None:
        out["subscription_id"] = event.subscription_id
    return out


encode = msgspec.json.Encoder().encode

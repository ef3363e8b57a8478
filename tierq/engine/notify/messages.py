"""What a notification says: the webhook body (Standard Webhooks envelope), the email text,
and how an attempt's outcome is written into the delivery task's error (so the attempt list
of ``GET /api/v1/tasks/{id}/notifications`` reads status and latency back from it)."""

from __future__ import annotations

import re
import string
from importlib import resources
from typing import Any

import orjson

from tierq.model import Event, Task
from tierq.timefmt import iso

# A webhook body stays under 20 kB: a result larger than this is sent as a truncated text.
MAX_RESULT_BYTES = 12_000
MAX_ERROR_CHARS = 4_000
MAX_SUBJECT_CHARS = 300
_EMAIL = string.Template(
    (
        resources.files(__package__ or "tierq.engine.notify") / "templates" / "task_email.txt"
    ).read_text(encoding="utf-8")
)


def _result(task: Task) -> tuple[Any, bool]:
    if task.result is None:
        return None, False
    if len(task.result) <= MAX_RESULT_BYTES:
        return orjson.Fragment(task.result), False
    return task.result[:MAX_RESULT_BYTES].decode("utf-8", errors="replace"), True


def event_data(event: Event, task: Task | None) -> dict[str, Any]:
    """The ``data`` of a notification: the event and the task as it stood then."""
    data: dict[str, Any] = {
        "event": event.event,
        "at": iso(event.at),
        "node": event.node,
        "tenant": event.tenant,
    }
    if event.subscription_id is not None:  # webhook_disabled
        data["subscription_id"] = event.subscription_id
        data["reason"] = event.error
        return data
    if not event.task_id:  # a breaker's or a queue's change
        if event.breaker is not None:
            data["breaker"] = event.breaker
        if event.queue:
            data["queue"] = event.queue
        return data
    data.update(
        task_id=event.task_id,
        type=event.type,
        queue=event.queue,
        priority=event.priority,
        attempt=event.attempt,
        duration_seconds=event.duration_s,
        retry_at=iso(event.retry_at),
    )
    if task is not None:
        result, truncated = _result(task)
        error = task.last_error if event.event != "succeeded" else None
        data.update(
            name=task.name,
            status=task.state.value,
            attempts=task.attempt,
            created_at=iso(task.created_at),
            started_at=iso(task.started_at),
            finished_at=iso(task.finished_at),
            result=result,
            result_truncated=truncated,
            error=None if error is None else error[:MAX_ERROR_CHARS],
        )
    return data


def webhook_body(event: Event, task: Task | None) -> bytes:
    """The Standard Webhooks envelope: ``{"type", "timestamp", "data"}``."""
    return orjson.dumps(
        {"type": f"task.{event.event}", "timestamp": iso(event.at), "data": event_data(event, task)}
    )


def email_message(event: Event, task: Task | None) -> tuple[str, str]:
    """(subject, plain-text body) of a notification email."""
    data = event_data(event, task)
    title = data.get("name") or event.task_id
    # One line, whatever the task's name holds: a header cannot carry a line break.
    subject = " ".join(f"[tierq] task {title} {event.event}".split())[:MAX_SUBJECT_CHARS]
    result = data.get("result")
    if isinstance(result, orjson.Fragment):
        contents = result.contents
        result = contents.decode("utf-8", "replace") if isinstance(contents, bytes) else contents
    fields = {k: "-" if v is None else str(v) for k, v in data.items()}
    fields.update(title=str(title), result="-" if result is None else str(result))
    return subject, _EMAIL.safe_substitute(fields)


# ---- attempt outcomes ----------------------------------------------------------------------

_STATUS = re.compile(r"\bHTTP (\d{3}) after (\d+) ms")
_LATENCY = re.compile(r"\bafter (\d+) ms")


def attempt_error(what: str, latency_ms: int, status: int | None = None) -> str:
    """An attempt's failure as the delivery task's error: ``HTTP 503 after 12 ms: ...``."""
    if status is not None:
        return f"HTTP {status} after {latency_ms} ms: {what}"
    return f"{what} after {latency_ms} ms"


def parse_attempt(error: str | None) -> tuple[int | None, int | None]:
    """(status code, latency in ms) written by ``attempt_error``; None where absent."""
    if not error:
        return None, None
    match = _STATUS.search(error)
    if match:
        return int(match.group(1)), int(match.group(2))
    match = _LATENCY.search(error)
    return None, (int(match.group(1)) if match else None)

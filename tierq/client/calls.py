"""What both clients share: each API call described once (method, path, parameters, body and
the type its answer decodes as), the retry policy, and the Server-Sent Events parser. The
sync and async clients only send the calls (``sync.py``, ``aio.py``)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tierq.api.shapes import (
    BatchOut,
    BulkOut,
    ErrorOut,
    EventOut,
    EventPage,
    ExecutionsOut,
    KeyList,
    KeyOut,
    QueueLimitsOut,
    QueueList,
    ScheduleOut,
    SchedulePage,
    TaskOut,
    TaskPage,
    TasksHealth,
)
from tierq.client.errors import ApiError
from tierq.engine.recovery import RecoveryRun
from tierq.engine.reports import Health, Statistics, Workers
from tierq.engine.rollups import MetricsReport

# The server's default cap on one batch (TIERQ_MAX_BATCH); submit_many's chunks stay below it.
DEFAULT_CHUNK = 1000
MAX_WAIT_PER_CALL_S = 60.0  # the server's longest wait_seconds
# Statuses that mean "not now": the server did nothing, the call may be sent again.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

_TASK_FIELDS = frozenset(
    {
        "type",
        "payload",
        "queue",
        "priority",
        "run_at",
        "delay_seconds",
        "max_retries",
        "timeout_seconds",
        "name",
        "description",
        "idempotency_key",
        "depends_on",
        "notify",
        "breaker",
    }
)


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    answer: Any = None  # the type the body decodes as (None: no body)
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Safe to send again after a connection broke mid-call (reads, and submissions, which
    # carry an idempotency key); other calls are sent again only when they surely never ran.
    repeatable: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """Exponential backoff with full jitter, capped; a server's Retry-After wins."""

    attempts: int = 5  # sends after the first
    base_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.cap_s * 3, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to the backoff
        return random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def _clean(params: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, list | tuple | set | frozenset):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out


def task_body(type: str, payload: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - _TASK_FIELDS
    if unknown:
        raise TypeError(f"unknown task fields: {', '.join(sorted(unknown))}")
    body = {"type": type, **{k: v for k, v in fields.items() if v is not None}}
    if payload is not None:
        body["payload"] = payload
    body.setdefault("idempotency_key", f"tq-{uuid.uuid4()}")
    return body


def submit(task: Mapping[str, Any]) -> Call:
    return Call("POST", "/api/v1/tasks", TaskOut, body=_json(task), repeatable=True)


def submit_batch(tasks: list[dict[str, Any]]) -> Call:
    # Sent again after a lost answer only if no task can be made twice.
    keyed = all(t.get("idempotency_key") for t in tasks)
    return Call("POST", "/api/v1/tasks/batch", BatchOut, body=_json(tasks), repeatable=keyed)


def keyed_chunks(tasks: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Chunks of at most ``size`` tasks, read lazily (a generator of millions is never held
    whole); each task without an idempotency key gets one, so a chunk sent again after a
    broken connection makes no second task."""
    run = uuid.uuid4().hex
    chunk: list[dict[str, Any]] = []
    for index, task in enumerate(tasks):
        item = dict(task)
        if "type" not in item:
            raise TypeError(f"task {index} has no type")
        item.setdefault("idempotency_key", f"tq-{run}-{index}")
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def get(task_id: str, wait_s: float | None = None) -> Call:
    params = {} if wait_s is None else {"wait_seconds": f"{wait_s:g}"}
    return Call("GET", f"/api/v1/tasks/{task_id}", TaskOut, params=params, repeatable=True)


def cancel(task_id: str) -> Call:
    return Call("POST", f"/api/v1/tasks/{task_id}/cancel", TaskOut)


def retry(task_id: str) -> Call:
    return Call("POST", f"/api/v1/tasks/{task_id}/retry", TaskOut)


def executions(task_id: str) -> Call:
    return Call("GET", f"/api/v1/tasks/{task_id}/executions", ExecutionsOut, repeatable=True)


def page(filters: Mapping[str, Any], after: str | None, size: int) -> Call:
    params = _clean({**filters, "sort": "created_at,desc", "after": after, "size": size})
    return Call("GET", "/api/v1/tasks", TaskPage, params=params, repeatable=True)


def bulk(action: str, filters: Mapping[str, Any], key: str | None) -> Call:
    headers = {"Idempotency-Key": key} if key else {}
    return Call(
        "POST",
        f"/api/v1/tasks/{action}",
        BulkOut,
        params=_clean(filters),
        headers=headers,
        repeatable=key is not None,
    )


def statistics() -> Call:
    return Call("GET", "/api/v1/tasks/statistics", Statistics, repeatable=True)


def health() -> Call:
    return Call("GET", "/health", Health, repeatable=True)


def workers() -> Call:
    return Call("GET", "/health/workers", Workers, repeatable=True)


def metrics(minutes: float, bucket_s: int | None) -> Call:
    params = _clean({"hours": minutes / 60, "bucket_seconds": bucket_s})
    return Call("GET", "/health/metrics", MetricsReport, params=params, repeatable=True)


def tasks_health() -> Call:
    return Call("GET", "/api/v1/tasks/health", TasksHealth, repeatable=True)


def recover() -> Call:
    return Call("POST", "/health/recovery", RecoveryRun)


def queues() -> Call:
    return Call("GET", "/api/v1/queues", QueueList, repeatable=True)


def queue_action(queue: str, action: str) -> Call:
    return Call("POST", f"/api/v1/queues/{queue}/{action}", QueueLimitsOut, repeatable=True)


def events_page(filters: Mapping[str, Any], after: str | None, limit: int) -> Call:
    params = _clean({**filters, "after": after, "limit": limit})
    return Call(
        "GET",
        "/api/v1/events",
        EventPage,
        params=params,
        headers={"Accept": "application/json"},
        repeatable=True,
    )


def create_schedule(spec: Mapping[str, Any]) -> Call:
    return Call("POST", "/api/v1/schedules", ScheduleOut, body=_json(spec))


def schedules(after: str | None, size: int = 100) -> Call:
    params = _clean({"after": after, "size": size})
    return Call("GET", "/api/v1/schedules", SchedulePage, params=params, repeatable=True)


def schedule(schedule_id: str, action: str | None = None, method: str = "GET") -> Call:
    path = f"/api/v1/schedules/{schedule_id}" + (f"/{action}" if action else "")
    answer = TaskOut if action == "trigger" else (None if method == "DELETE" else ScheduleOut)
    return Call(method, path, answer, repeatable=method == "GET")


def create_key(name: str, role: str, tenant: str | None) -> Call:
    body = _json({"name": name, "role": role, **({"tenant": tenant} if tenant else {})})
    return Call("POST", "/api/v1/keys", KeyOut, body=body)


def keys() -> Call:
    return Call("GET", "/api/v1/keys", KeyList, repeatable=True)


def key(key_id: str, action: str | None = None) -> Call:
    if action == "revoke":
        return Call("DELETE", f"/api/v1/keys/{key_id}", KeyOut)
    if action == "rotate":
        return Call("POST", f"/api/v1/keys/{key_id}/rotate", KeyOut)
    return Call("GET", f"/api/v1/keys/{key_id}", KeyOut, repeatable=True)


def stream_params(filters: Mapping[str, Any]) -> dict[str, str]:
    return _clean(filters)


def decode(call: Call, status: int, content: bytes) -> Any:
    """The answer as its type, or ApiError carrying the server's code, message and path."""
    if status >= 400:
        try:
            error = msgspec.json.decode(content, type=ErrorOut).error
        except (msgspec.DecodeError, msgspec.ValidationError):
            text = content[:200].decode(errors="replace")
            raise ApiError(status, "http_error", text, {}) from None
        raise ApiError(status, error.code, error.message, error.details)
    if call.answer is None or not content:
        return None
    return msgspec.json.decode(content, type=call.answer)


class EventParser:
    """Server-Sent Events: lines in, events out (``id`` is the cursor to resume after)."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> EventOut | None:
        if line == "":
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return msgspec.json.decode(data, type=EventOut)
        if line.startswith(":"):
            return None  # a keep-alive comment
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self.last_id = value
        return None

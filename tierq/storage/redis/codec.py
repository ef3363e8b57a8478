"""Task bodies as stored in the dispatch tier's body hash.

A body is a JSON object with the Task's fields. ``payload``, ``notify`` and ``result`` are JSON
bytes already: they are embedded verbatim (``orjson.Fragment``) and read back verbatim
(``msgspec.Raw``), so the handler receives exactly the bytes that were submitted: no
re-encoding, no base64, no reformatting. A missing optional field means ``None``.

``attempt``, ``run_at`` and ``state`` are not taken from the body: the attempt and run_at
change while the task lives in Redis and are kept in the meta hash and the sort member.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from tierq.model import Task, TaskState


class _Body(msgspec.Struct):
    id: str
    type: str
    queue: str
    priority: int
    payload: msgspec.Raw
    created_at: float
    updated_at: float
    max_retries: int
    timeout_s: float
    attempt_base: int = 0
    name: str | None = None
    description: str | None = None
    idempotency_key: str | None = None
    depends_on: list[str] = msgspec.field(default_factory=list)
    # Empty Raw = absent = None; a stored JSON ``null`` stays the bytes b"null".
    notify: msgspec.Raw = msgspec.Raw()
    result: msgspec.Raw = msgspec.Raw()
    last_error: str | None = None
    schedule_id: str | None = None
    scheduled_for: float | None = None
    tenant: str = "default"
    breaker: str | None = None
    request_id: str | None = None
    traceparent: str | None = None


_decoder = msgspec.json.Decoder(_Body)


def encode_task(task: Task) -> bytes:
    doc: dict[str, Any] = {
        "id": task.id,
        "type": task.type,
        "queue": task.queue,
        "priority": task.priority,
        "payload": orjson.Fragment(task.payload),
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "max_retries": task.max_retries,
        "timeout_s": task.timeout_s,
    }
    if task.attempt_base:
        doc["attempt_base"] = task.attempt_base
    if task.name is not None:
        doc["name"] = task.name
    if task.description is not None:
        doc["description"] = task.description
    if task.idempotency_key is not None:
        doc["idempotency_key"] = task.idempotency_key
    if task.depends_on:
        doc["depends_on"] = list(task.depends_on)
    if task.notify is not None:
        doc["notify"] = orjson.Fragment(task.notify)
    if task.result is not None:
        doc["result"] = orjson.Fragment(task.result)
    if task.last_error is not None:
        doc["last_error"] = task.last_error
    if task.schedule_id is not None:
        doc["schedule_id"] = task.schedule_id
        doc["scheduled_for"] = task.scheduled_for
    if task.tenant != "default":  # absent = the default tenant: no bytes for most tasks
        doc["tenant"] = task.tenant
    if task.breaker is not None:
        doc["breaker"] = task.breaker
    if task.request_id is not None:
        doc["request_id"] = task.request_id
    if task.traceparent is not None:
        doc["traceparent"] = task.traceparent
    return orjson.dumps(doc)


def _raw(value: msgspec.Raw) -> bytes | None:
    return bytes(value) if len(value) else None


def decode_task(
    body: bytes, attempt: int, run_at: float, state: TaskState, lease_owner: str | None
) -> Task:
    b = _decoder.decode(body)
    return Task(
        id=b.id,
        type=b.type,
        queue=b.queue,
        priority=b.priority,
        payload=bytes(b.payload),
        state=state,
        run_at=run_at,
        created_at=b.created_at,
        updated_at=b.updated_at,
        max_retries=b.max_retries,
        timeout_s=b.timeout_s,
        attempt=attempt,
        attempt_base=b.attempt_base,
        name=b.name,
        description=b.description,
        idempotency_key=b.idempotency_key,
        depends_on=tuple(b.depends_on),
        notify=_raw(b.notify),
        result=_raw(b.result),
        last_error=b.last_error,
        lease_owner=lease_owner,
        schedule_id=b.schedule_id,
        scheduled_for=b.scheduled_for,
        tenant=b.tenant,
        breaker=b.breaker,
        request_id=b.request_id,
        traceparent=b.traceparent,
    )

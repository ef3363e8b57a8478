"""Decoding requests and building answers of API v1 (the answers' types: ``api/shapes.py``).

A request body is decoded once, straight into typed structs (msgspec): types, ranges and
unknown fields are checked by the decoder and reported with the JSON path of the offending
field. What a type system cannot say is the engine's to check (``tierq.engine.intake``).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from tierq.api.shapes import (
    NULL,
    DeliveryAttemptOut,
    DeliveryOut,
    EmailTargetOut,
    EventOut,
    ExecutionOut,
    NotifyOut,
    SubscriptionOut,
    TaskOut,
    WebhookTargetOut,
)
from tierq.engine.errors import field_error
from tierq.engine.intake import TaskIn
from tierq.engine.notify.service import DeliveryReport
from tierq.engine.notify.targets import stored_targets
from tierq.model import Event, Execution, Task, WebhookSubscription
from tierq.timefmt import iso

_single_decoder = msgspec.json.Decoder(TaskIn)
_batch_decoder = msgspec.json.Decoder(list[TaskIn])


def decode_tasks(body: bytes, batch: bool) -> list[TaskIn]:
    """Decode a request body; raise FieldError (with path) or msgspec.DecodeError."""
    if batch:
        return decode_as(_batch_decoder, body)
    return [decode_as(_single_decoder, body)]


T = TypeVar("T")


def decode_as(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode a request body with ``decoder``; a value that does not fit is a FieldError
    naming its path (``$.events[2]``), malformed JSON a msgspec.DecodeError."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise field_error(exc) from None


def task_out(task: Task) -> TaskOut:
    # A new task's run_at and updated_at are usually its created_at: formatted once.
    created = iso(task.created_at)
    return TaskOut(
        id=task.id,
        type=task.type,
        queue=task.queue,
        priority=task.priority,
        status=task.state,
        payload=msgspec.Raw(task.payload),
        result=NULL if task.result is None else msgspec.Raw(task.result),
        attempt=task.attempt,
        max_retries=task.max_retries,
        attempts_left=max(0, task.attempts_left),
        timeout_seconds=task.timeout_s,
        run_at=created if task.run_at == task.created_at else iso(task.run_at),
        created_at=created,
        updated_at=created if task.updated_at == task.created_at else iso(task.updated_at),
        started_at=iso(task.started_at),
        finished_at=iso(task.finished_at),
        name=task.name,
        description=task.description,
        idempotency_key=task.idempotency_key,
        depends_on=list(task.depends_on),
        notify=None if task.notify is None else notify_out(task.notify),
        last_error=task.last_error,
        lease_owner=task.lease_owner,
        schedule_id=task.schedule_id,
        scheduled_for=iso(task.scheduled_for),
        tenant=task.tenant,
        breaker=task.breaker,
        request_id=task.request_id,
    )


def notify_out(raw: bytes) -> NotifyOut:
    """A task's notification targets, in the shape it was submitted in."""
    targets = stored_targets(raw)
    out = NotifyOut()
    if targets.webhook_url:
        out.webhook = WebhookTargetOut(targets.webhook_url, list(targets.webhook_events))
    if targets.email_to:
        out.email = EmailTargetOut(list(targets.email_to), list(targets.email_events))
    return out


def subscription_out(sub: WebhookSubscription, secret: bool = False) -> SubscriptionOut:
    out = SubscriptionOut(
        id=sub.id,
        url=sub.url,
        events=list(sub.events),
        queue=sub.queue,
        type=sub.type,
        enabled=sub.enabled,
        tenant=sub.tenant,
        description=sub.description,
        disabled_reason=sub.disabled_reason,
        created_at=iso(sub.created_at),
        updated_at=iso(sub.updated_at),
    )
    if secret:  # only in the answer to its creation: it is never shown again
        out.secret = sub.secret
    return out


def delivery_out(report: DeliveryReport) -> DeliveryOut:
    d = report.delivery
    return DeliveryOut(
        id=d.delivery_id,
        channel=d.channel,
        target=d.target,
        event=d.event,
        subscription_id=d.subscription_id,
        created_at=iso(d.created_at),
        status=report.status,
        attempts=[
            DeliveryAttemptOut(
                attempt=a.attempt,
                started_at=iso(a.started_at),
                finished_at=iso(a.finished_at),
                outcome=a.outcome,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
            )
            for a in report.attempts
        ],
    )


def execution_out(execution: Execution) -> ExecutionOut:
    duration = None
    if execution.started_at is not None and execution.finished_at is not None:
        duration = round(execution.finished_at - execution.started_at, 6)
    return ExecutionOut(
        attempt=execution.attempt,
        started_at=iso(execution.started_at),
        finished_at=iso(execution.finished_at),
        duration_seconds=duration,
        outcome=None if execution.outcome is None else execution.outcome.value,
        error=execution.error,
        worker=execution.worker,
    )


def event_out(event: Event) -> EventOut:
    """An event as the stream and the event pages show it (the log's JSON, times in ISO)."""
    out = EventOut(
        cursor=event.cursor,
        event=event.event,
        at=iso(event.at),
        task_id=event.task_id or None,
        queue=event.queue or None,
        type=event.type or None,
        priority=event.priority,
        attempt=event.attempt,
        node=event.node,
        tenant=event.tenant,
    )
    if event.error is not None:
        out.error = event.error
    if event.duration_s is not None:
        out.duration_seconds = event.duration_s
    if event.retry_at is not None:
        out.retry_at = iso(event.retry_at)
    if event.subscription_id is not None:
        out.subscription_id = event.subscription_id
    if event.breaker is not None:
        out.breaker = event.breaker
    return out


encode = msgspec.json.Encoder().encode

"""What API v1 answers, as typed structs: the handlers build these and msgspec encodes them,
and the OpenAPI document (``api/openapi.py``) is generated from the same types, so the
document cannot describe a field the server does not send, or miss one it does.

Times are ISO 8601 strings in UTC (``2026-12-07T10:00:00.000Z``), or null where there is none
(a stored time that is not a number shows as null too: ``tierq.timefmt.iso``).
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from tierq.engine.rollups import Window
from tierq.model import TaskState

Time = Annotated[str | None, Meta(description="ISO 8601 time in UTC, or null")]
Json = Annotated[Raw, Meta(description="any JSON value, as submitted or returned")]
# msgspec decodes ``Raw | None`` as null only, so a JSON value that may be absent is a Raw
# holding ``null``: the same bytes on the wire, and a client decodes it.
NULL = Raw(b"null")


class Out(Struct, omit_defaults=True):
    """Base of every answer: fields left UNSET are not sent (they are optional in the
    document). Unknown fields are ignored when decoding, so a client built on these types
    keeps working against a newer server that sends more."""


# ---- errors -------------------------------------------------------------------------------


class ErrorBody(Out):
    code: Annotated[str, Meta(description="machine-readable, e.g. invalid_field, not_found")]
    message: str
    details: Annotated[
        dict[str, Any],
        Meta(description="for a bad field: path ($[3].payload.url), index and field"),
    ]


class ErrorOut(Out):
    error: ErrorBody


# ---- tasks --------------------------------------------------------------------------------


class WebhookTargetOut(Out):
    url: str
    events: list[str]


class EmailTargetOut(Out):
    to: list[str]
    events: list[str]


class NotifyOut(Out):
    webhook: WebhookTargetOut | UnsetType = UNSET
    email: EmailTargetOut | UnsetType = UNSET


class TaskOut(Out):
    id: str
    type: str
    queue: str
    priority: int
    status: TaskState
    payload: Json
    result: Annotated[Raw, Meta(description="its handler's return value (null: none)")]
    attempt: int
    max_retries: int
    attempts_left: int
    timeout_seconds: float
    run_at: Time
    created_at: Time
    updated_at: Time
    started_at: Time
    finished_at: Time
    name: str | None
    description: str | None
    idempotency_key: str | None
    depends_on: list[str]
    notify: NotifyOut | None
    last_error: str | None
    lease_owner: Annotated[str | None, Meta(description="the replica holding its lease")]
    schedule_id: Annotated[str | None, Meta(description="set on the tasks a schedule fired")]
    scheduled_for: Annotated[Time, Meta(description="the schedule tick it was fired for")]
    tenant: str
    breaker: Annotated[str | None, Meta(description="the circuit breaker it names")]
    request_id: Annotated[str | None, Meta(description="X-Request-ID of its submission")]


class BatchOut(Out):
    ids: list[str]
    count: int
    existing: Annotated[
        list[int], Meta(description="positions whose idempotency key named an existing task")
    ]


class TaskPage(Out):
    items: list[TaskOut]
    page: int
    size: int
    has_more: bool
    next_after: Annotated[str | None, Meta(description="pass as after= for the next page")]
    searched: Annotated[
        int | None, Meta(description="a search (name, payload.*): how many tasks it looked at")
    ] = None
    search_capped: Annotated[
        bool | None,
        Meta(description="the search stopped at the newest tasks: older ones were not seen"),
    ] = None


class ExecutionOut(Out):
    attempt: int
    started_at: Time
    finished_at: Time
    duration_seconds: float | None
    outcome: str | None
    error: str | None
    worker: str | None


class ExecutionsOut(Out):
    task_id: str
    items: list[ExecutionOut]


class Alive(Out):
    status: str


# ---- events -------------------------------------------------------------------------------


class EventOut(Out):
    cursor: str
    event: str
    at: Time
    task_id: str | None
    queue: str | None
    type: str | None
    priority: int
    attempt: int
    node: str
    tenant: str
    error: str | UnsetType = UNSET
    duration_seconds: float | UnsetType = UNSET
    retry_at: str | UnsetType | None = UNSET
    subscription_id: str | UnsetType = UNSET
    breaker: str | UnsetType = UNSET


class EventReset(Out):
    oldest_cursor: str


class EventPage(Out):
    items: list[EventOut]
    next_cursor: str | None
    reset: Annotated[
        EventReset | None, Meta(description="set when the cursor fell out of the log's retention")
    ]


# ---- webhooks and notifications -----------------------------------------------------------


class SubscriptionOut(Out):
    id: str
    url: str
    events: list[str]
    queue: str | None
    type: str | None
    enabled: bool
    tenant: str
    description: str | None
    disabled_reason: str | None
    created_at: Time
    updated_at: Time
    secret: Annotated[str | UnsetType, Meta(description="only in the answer to its creation")] = (
        UNSET
    )


class SubscriptionList(Out):
    items: list[SubscriptionOut]


class DeliveryAttemptOut(Out):
    attempt: int
    started_at: Time
    finished_at: Time
    outcome: str | None
    status_code: int | None
    latency_ms: float | None
    error: str | None


class DeliveryOut(Out):
    id: str
    channel: str
    target: str
    event: str
    subscription_id: str | None
    created_at: Time
    status: str
    attempts: list[DeliveryAttemptOut]


class DeliveriesOut(Out):
    task_id: str
    items: list[DeliveryOut]


# ---- keys and audit -----------------------------------------------------------------------


class KeyOut(Out):
    id: str
    name: str
    role: str
    tenant: str
    prefix: str
    created_at: Time
    expires_at: Time
    last_used_at: Time
    revoked_at: Time
    previous_valid_until: Time
    rate_limits: Json
    secret: Annotated[str | UnsetType, Meta(description="shown once: on creation, rotation")] = (
        UNSET
    )


class KeyList(Out):
    items: list[KeyOut]


class AuditOut(Out):
    seq: int
    at: Time
    actor: str | None
    tenant: str | None
    role: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    request_id: str | None
    source: str | None
    status: int | None
    changes: Json
    hash: str


class AuditPage(Out):
    items: list[AuditOut]
    has_more: bool
    next_before: int | None


# ---- flow control -------------------------------------------------------------------------


class RateOut(Out):
    limit: int
    per_seconds: float


class QueueLimitsOut(Out):
    name: str
    paused: bool
    max_running: int | None
    rate: RateOut | None


class LimitsOut(Out):
    max_running: int | None
    rate: RateOut | None


class QueueOut(Out):
    name: str
    counts: dict[str, int]
    running: int
    paused: bool
    limits: LimitsOut
    oldest_pending_age_seconds: float | None
    finished_last_minute: int


class QueueList(Out):
    items: list[QueueOut]


class BreakerOut(Out):
    key: str
    state: str
    window_calls: int
    window_failures: int
    trips: int
    forced: bool
    opened_at: Time
    next_probe_at: Time
    probes_granted: int
    probe_successes: int


class BreakerList(Out):
    enabled: bool
    items: list[BreakerOut]


class BulkOut(Out):
    action: str
    changed: int


# ---- schedules ----------------------------------------------------------------------------


class FireTime(Out):
    at: Annotated[str, Meta(description="in the schedule's time zone")]
    utc: Time


class RunOut(Out):
    tick: Time
    tick_local: str
    skipped: bool
    skipped_at: Time | UnsetType = UNSET
    reason: str | UnsetType = UNSET
    fired_at: Time | UnsetType = UNSET
    task_id: str | UnsetType | None = UNSET
    status: str | UnsetType | None = UNSET
    trigger: bool | UnsetType = UNSET


class TemplateOut(Out):
    type: str
    payload: Json
    queue: str
    priority: int | str
    max_retries: int | None
    timeout_seconds: float | None
    notify: dict[str, Any] | None
    name: str | None
    description: str | None


class ScheduleOut(Out):
    id: str
    name: str
    description: str | None
    cron: str | None
    every_seconds: int | None
    timezone: str
    start_at: Time
    end_at: Time
    max_runs: int | None
    jitter_seconds: int
    task: TemplateOut
    overlap: str
    catchup: str
    catchup_window_seconds: int
    pause_after_failures: int
    paused: bool
    state: str
    runs: int
    consecutive_failures: int
    last_tick: Time
    next_runs: list[FireTime]
    last_run: RunOut | None
    created_at: Time
    updated_at: Time
    version: int
    tenant: str


class SchedulePage(Out):
    items: list[ScheduleOut]
    has_more: bool
    next_after: str | None


class PreviewOut(Out):
    cron: str | None
    every_seconds: int | None
    timezone: str
    next_runs: list[FireTime]


class RunsOut(Out):
    schedule_id: str
    items: list[RunOut]
    next_before: Time


# ---- health ---------------------------------------------------------------------------


class QueueHealth(Out):
    name: str
    queued: int
    running: int
    failed: int  # dead-lettered, waiting for a replay
    paused: bool
    oldest_pending_age_seconds: float | None
    finished_last_minute: int


class TasksHealth(Out):
    status: str  # healthy, degraded, unhealthy
    reasons: list[str]
    queues: list[QueueHealth]
    open_breakers: list[str]
    last_15_minutes: Window | None  # the summary of /api/v1/tasks/metrics (None: off)

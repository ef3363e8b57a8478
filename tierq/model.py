"""Tasks, their states and the records that move between the engine and the stores.

Times are float seconds since the Unix epoch (UTC) everywhere inside the process; the API
layer converts to and from ISO 8601. Payloads and results are kept as JSON bytes: the API
decodes a request once and the payload bytes travel untouched to the record tier and to the
handler, which decodes them only if it needs them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import msgspec


class TaskState(enum.StrEnum):
    """The life of a task. Terminal states never change again except by an explicit retry.

    - ``pending``: accepted, waiting for the tasks in ``depends_on`` to succeed.
    - ``scheduled``: accepted, not due yet (``run_at`` in the future, or a retry in backoff).
    - ``queued``: due and waiting for a worker (in the memory tier or waiting to be paged in).
    - ``running``: a worker holds it; ``attempt`` is the attempt being run (the fencing token).
    - ``succeeded``: the handler returned; ``result`` holds what it returned (JSON).
    - ``failed``: every attempt failed; this is the dead-letter state. ``retry`` replays it.
    - ``cancelled``: cancelled before it could finish (by a user, or a dependency that failed).
    """

    PENDING = "pending"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[TaskState] = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED}
)
LIVE_STATES: frozenset[TaskState] = frozenset(
    {TaskState.PENDING, TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING}
)
ALL_STATES: tuple[TaskState, ...] = tuple(TaskState)

# Which state may follow which. Every state change the engine makes in memory goes through
# ``Task.move``, which consults this table, so a change it does not allow is a bug that fails at
# once (in tests, the first run that makes it). Stores enforce the terminal rule on their side.
ALLOWED_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.QUEUED, TaskState.SCHEDULED, TaskState.CANCELLED}),
    TaskState.SCHEDULED: frozenset({TaskState.QUEUED, TaskState.CANCELLED}),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.CANCELLED, TaskState.SCHEDULED}),
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCEEDED,
            TaskState.FAILED,
            TaskState.SCHEDULED,  # failed attempt, retry after backoff
            TaskState.QUEUED,  # handed back on shutdown or rescued after a crash
            TaskState.CANCELLED,
        }
    ),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset({TaskState.QUEUED}),  # explicit retry (replay from dead letter)
    TaskState.CANCELLED: frozenset({TaskState.QUEUED}),  # explicit retry
}


def transition_allowed(old: TaskState, new: TaskState) -> bool:
    return new in ALLOWED_TRANSITIONS[old]


class IllegalTransition(AssertionError):
    """The engine tried a state change that ``ALLOWED_TRANSITIONS`` forbids: a bug, never a
    user error (users asking for an impossible change get ``Conflict`` before any move)."""


class Priority(enum.IntEnum):
    """Named priorities; any integer is accepted too. Higher runs first."""

    LOW = 0
    MEDIUM = 5
    HIGH = 10


class Outcome(enum.StrEnum):
    """How one attempt (one row of a task's execution history) ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    # The process running it died or lost its lease; the attempt was returned to the queue.
    ABANDONED = "abandoned"
    # Handed back unfinished at graceful shutdown after the grace period.
    INTERRUPTED = "interrupted"


@dataclass(slots=True)
class Task:
    """One task as the engine and the stores see it.

    ``attempt`` counts attempts started so far (0 before the first run) and doubles as the
    fencing token of the current lease. ``attempt_base`` is ``attempt`` at the last explicit
    retry, so the retry budget is ``attempt - attempt_base <= max_retries + 1``.
    """

    id: str
    type: str
    queue: str
    priority: int
    payload: bytes  # JSON
    state: TaskState
    run_at: float
    created_at: float
    updated_at: float
    max_retries: int
    timeout_s: float
    attempt: int = 0
    attempt_base: int = 0
    name: str | None = None
    description: str | None = None
    idempotency_key: str | None = None
    depends_on: tuple[str, ...] = ()
    notify: bytes | None = None  # JSON, notification targets
    result: bytes | None = None  # JSON
    last_error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_owner: str | None = None
    # Set on the tasks a schedule creates: which schedule, and the tick (fire time) it is for.
    schedule_id: str | None = None
    scheduled_for: float | None = None
    # Whose task this is: taken from the submitter's credential, never from the body.
    tenant: str = "default"
    # The circuit breaker this task answers to, if it names one (engine/flow/breakers.py).
    breaker: str | None = None
    # The X-Request-ID of the request that submitted it: its handler gets it, its http calls
    # and webhooks send it, and every log line of its attempts names it, on any replica.
    request_id: str | None = None
    # The W3C traceparent of the submission (tracing on): its attempts' spans, on any
    # replica, join the submitter's trace.
    traceparent: str | None = None

    @property
    def sort_key(self) -> tuple[int, float, str]:
        """Run order: priority (higher first), then run_at, then arrival (ids are time-ordered)."""
        return (-self.priority, self.run_at, self.id)

    @property
    def attempts_left(self) -> int:
        return self.max_retries + 1 - (self.attempt - self.attempt_base)

    def move(self, state: TaskState, at: float) -> None:
        """Change state at time ``at``, as the transition table allows, or raise."""
        if state not in ALLOWED_TRANSITIONS[self.state]:
            raise IllegalTransition(f"task {self.id}: {self.state.value} -> {state.value}")
        self.state = state
        self.updated_at = at


@dataclass(slots=True)
class Transition:
    """One state change of one task, written to the record tier in batches.

    Stores apply it only while the stored task is not terminal and its stored ``attempt`` is
    not greater than ``attempt`` (the fencing token): a late report from an older attempt can
    never overwrite a newer one. Fields left ``None`` keep their stored value, except
    ``lease_owner`` and ``last_error`` / ``result`` where ``clear_*`` says so.

    When ``outcome`` or ``started_at`` is set, the execution row (task_id, attempt) is
    inserted or completed in the same transaction.
    """

    task_id: str
    attempt: int
    state: TaskState
    at: float
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: bytes | None = None
    error: str | None = None
    lease_owner: str | None = None
    worker: str | None = None
    outcome: Outcome | None = None
    # The task reported on, where the reporter holds it: events read its queue, type and
    # priority from it instead of looking it up (stores ignore it).
    task: Task | None = None


@dataclass(slots=True, frozen=True)
class Execution:
    """One attempt of one task."""

    task_id: str
    attempt: int
    started_at: float | None
    finished_at: float | None
    outcome: Outcome | None
    error: str | None
    worker: str | None


@dataclass(slots=True, frozen=True)
class TaskFilter:
    """What ``GET /api/v1/tasks`` may filter, sort and page by. ``None`` means any."""

    states: tuple[TaskState, ...] | None = None
    type: str | None = None
    queue: str | None = None
    priority: int | None = None
    schedule_id: str | None = None
    tenant: str | None = None  # None: every tenant
    sort_field: str = "created_at"  # one of SORT_FIELDS
    descending: bool = True
    page: int = 0
    size: int = 50
    # Keyset pagination: when set, rows strictly after this task id in sort order
    # (only for sort_field == "created_at"; ids are time-ordered). Overrides ``page``.
    after_id: str | None = None
    # Search: a name prefix, and payload fields equal to JSON scalars ((path parts, value),
    # the parts checked by SEARCH_PATH_PART). Neither has an index: a search looks at the
    # newest ``search_cap`` tasks only (every task when None).
    # The tasks that depend on this one (its children in the dependency graph).
    dependent_of: str | None = None
    name_prefix: str | None = None
    payload: tuple[tuple[tuple[str, ...], str | int | float | bool], ...] = ()
    search_cap: int | None = None

    @property
    def searching(self) -> bool:
        return self.name_prefix is not None or bool(self.payload)


# A payload path part a search may name (it is spelled into a JSON path, never a value).
SEARCH_PATH_PART = re.compile(r"[A-Za-z0-9_-]{1,64}")


SORT_FIELDS: tuple[str, ...] = ("created_at", "priority", "run_at", "updated_at")


@dataclass(slots=True, frozen=True)
class TaskPage:
    items: list[Task]
    has_more: bool


@dataclass(slots=True, frozen=True)
class RecoveryReport:
    """What start-up recovery changed in the record tier."""

    requeued_running: int
    released_leases: int


@dataclass(slots=True, frozen=True)
class DependencyRelease:
    """Result of resolving dependents after some tasks finished."""

    ready: list[Task] = field(default_factory=list)  # now queued or scheduled
    cancelled: list[str] = field(default_factory=list)  # a dependency failed or was cancelled


class EventType(enum.StrEnum):
    """What happened to a task (or to a webhook subscription, a breaker, a queue).

    Each is published once, after the change it reports is durable in the record tier.
    """

    SUBMITTED = "submitted"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    ATTEMPT_FAILED = "attempt_failed"  # an attempt failed; ``retry_at`` says when the next runs
    FAILED = "failed"  # every attempt failed: the dead-letter state
    CANCELLED = "cancelled"
    RELEASED = "released"  # a lease returned to the queue (its replica died or shut down)
    RETRIED = "retried"  # replayed by hand from failed or cancelled
    WEBHOOK_DISABLED = "webhook_disabled"
    # Flow control (``breaker`` or ``queue`` says which): not about one task.
    BREAKER_OPENED = "breaker_opened"
    BREAKER_HALF_OPEN = "breaker_half_open"
    BREAKER_CLOSED = "breaker_closed"
    QUEUE_PAUSED = "queue_paused"
    QUEUE_RESUMED = "queue_resumed"


# Events that are not about a task (notifications subscribe to task events only).
NON_TASK_EVENTS: frozenset[str] = frozenset(
    {
        EventType.WEBHOOK_DISABLED,
        EventType.BREAKER_OPENED,
        EventType.BREAKER_HALF_OPEN,
        EventType.BREAKER_CLOSED,
        EventType.QUEUE_PAUSED,
        EventType.QUEUE_RESUMED,
    }
)


TERMINAL_EVENTS: frozenset[str] = frozenset(
    {EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELLED}
)


class Event(msgspec.Struct, omit_defaults=True):
    """One event as the event log keeps it (JSON) and subscribers receive it.

    Bounded in size on purpose: no payload, no result, an error summary of at most
    ``EVENT_ERROR_CHARS`` characters. ``cursor`` is set by the event log when it is read back
    (the position to resume after); it is empty on a freshly published event. Not frozen only
    so a log can set the cursor without a copy: nobody else changes an event.
    """

    at: float
    event: str
    task_id: str = ""
    queue: str = ""
    type: str = ""
    priority: int = 0
    attempt: int = 0
    node: str = ""
    tenant: str = "default"
    error: str | None = None
    duration_s: float | None = None
    retry_at: float | None = None
    subscription_id: str | None = None
    breaker: str | None = None
    cursor: str = ""


EVENT_ERROR_CHARS = 500


@dataclass(slots=True, frozen=True)
class EventFilter:
    """What a reader of the event log wants; ``None`` means any."""

    task_id: str | None = None
    queue: str | None = None
    type: str | None = None
    events: frozenset[str] | None = None
    tenant: str | None = None

    def matches(self, event: Event) -> bool:
        return (
            (self.tenant is None or event.tenant == self.tenant)
            and (self.task_id is None or event.task_id == self.task_id)
            and (self.queue is None or event.queue == self.queue)
            and (self.type is None or event.type == self.type)
            and (self.events is None or event.event in self.events)
        )


@dataclass(slots=True, frozen=True)
class WebhookSubscription:
    """A tenant's webhook: its events matching its filters (``None`` = any) are delivered
    to ``url``, signed with its own ``secret`` (a ``whsec_`` key, kept to sign with, shown to
    its creator once)."""

    id: str
    url: str
    secret: str
    events: tuple[str, ...]
    queue: str | None
    type: str | None
    enabled: bool
    created_at: float
    updated_at: float
    description: str | None = None
    disabled_reason: str | None = None
    tenant: str = "default"  # it hears this tenant's events only

    def wants(self, event: Event) -> bool:
        return (
            self.enabled
            and event.tenant == self.tenant
            and event.event in self.events
            and (self.queue is None or event.queue == self.queue)
            and (self.type is None or event.type == self.type)
        )


@dataclass(slots=True, frozen=True)
class Delivery:
    """One notification of one event of a task: a delivery task (``delivery_id``, of type
    ``tierq.webhook`` or ``tierq.email``) that runs it with retries, indexed by the task it is
    about (``GET /api/v1/tasks/{id}/notifications``)."""

    delivery_id: str
    task_id: str
    channel: str  # "webhook" or "email"
    target: str  # the URL, or the addresses (comma-separated)
    event: str
    created_at: float
    subscription_id: str | None = None


# ---- schedules ---------------------------------------------------------------------------


class SkipReason(enum.StrEnum):
    """Why a tick created no task."""

    OVERLAP = "overlap"  # the overlap policy held it back (previous run not finished)
    PAUSED = "paused"  # the schedule was paused at the tick
    WINDOW = "window"  # before start_at
    MISSED = "missed"  # no replica fired it in time, and the catch-up policy dropped it


@dataclass(slots=True)
class Schedule:
    """One schedule as stored: its definition (``spec``, JSON of engine/schedules/spec.py's
    ScheduleSpec) and what firing changes. ``version`` grows with every edit."""

    id: str
    name: str
    spec: bytes
    paused: bool
    version: int
    created_at: float
    updated_at: float
    last_tick: float | None = None  # the latest tick handled: fired or skipped
    runs: int = 0  # ticks fired
    failures: int = 0  # consecutive fired runs that ended failed
    last_task_id: str | None = None
    next_fire_at: float | None = None
    tenant: str = "default"


@dataclass(slots=True, frozen=True)
class ScheduleSkip:
    schedule_id: str
    tick: float
    at: float
    reason: SkipReason


@dataclass(slots=True)
class ScheduleFire:
    """What one pass of the scheduler decided for one schedule, written in one transaction
    with every other schedule's: the tasks of the ticks fired and the ticks skipped, applied
    only while the stored schedule still has ``version`` and ``expected_last_tick`` (so a
    stale leader's or an outdated decision changes nothing). A trigger (``trigger=True``)
    adds its task whatever the schedule's state, and changes nothing else."""

    schedule_id: str
    version: int
    expected_last_tick: float | None
    last_tick: float | None
    next_fire_at: float | None
    tasks: list[Task] = field(default_factory=list)
    skips: list[ScheduleSkip] = field(default_factory=list)
    trigger: bool = False


@dataclass(slots=True, frozen=True)
class ScheduleRun:
    """One entry of a schedule's history: a fired tick (its task and the task's state) or a
    skipped one (``reason``)."""

    tick: float
    at: float  # when it fired or was skipped
    task_id: str | None = None
    state: TaskState | None = None
    trigger: bool = False
    reason: SkipReason | None = None


@dataclass(slots=True, frozen=True)
class ScheduleFilter:
    tenant: str | None = None  # None: every tenant
    paused: bool | None = None
    name_prefix: str | None = None
    after_id: str | None = None
    size: int = 50


# ---- access: API keys and the audit log ---------------------------------------------------

ROLES = ("viewer", "submitter", "operator", "admin")
# The tenant of a platform key: it sees and manages every tenant's records.
ALL_TENANTS = "*"
# The tenant of single-tenant deployments, of everything made without credentials, and of
# what a platform key creates.
DEFAULT_TENANT = "default"


@dataclass(slots=True)
class ApiKey:
    """An API key as stored: never the secret, only the SHA-256 of it (``secret_hash``). During
    a rotation the previous secret's hash is kept until ``previous_until``, so clients switch
    over without an outage. ``prefix`` is the secret's first characters, for display."""

    id: str
    name: str
    role: str  # one of ROLES
    tenant: str  # a tenant name, or ALL_TENANTS
    secret_hash: str
    prefix: str
    created_at: float
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None
    previous_hash: str | None = None
    previous_until: float | None = None
    rate_limits: bytes | None = None  # JSON: {"submit": {"per_second": .., "burst": ..}, ...}

    def usable(self, now: float, previous: bool = False) -> bool:
        """Not revoked, not expired and (for the previous secret) inside its grace period."""
        if self.revoked_at is not None or (self.expires_at is not None and now >= self.expires_at):
            return False
        return not previous or (self.previous_until is not None and now < self.previous_until)


@dataclass(slots=True, frozen=True)
class AuditEntry:
    """One audited call, as the API records it (``seq`` and the chain hashes are the store's)."""

    at: float
    actor: str  # key id, JWT subject, or "anonymous"
    tenant: str
    role: str
    action: str  # e.g. "POST /api/v1/tasks", or "auth.failed"
    resource_type: str
    resource_id: str | None
    request_id: str
    source: str  # the peer address
    status: int
    changes: bytes | None = None  # JSON of the changed fields (redacted), for updates


@dataclass(slots=True, frozen=True)
class AuditRecord:
    """A stored audit row: the entry, its place in the log and its link in the hash chain
    (``hash`` = SHA-256 of ``prev_hash`` and the entry's canonical JSON)."""

    seq: int
    entry: AuditEntry
    prev_hash: str
    hash: str


@dataclass(slots=True, frozen=True)
class AuditFilter:
    tenant: str | None = None  # None: every tenant (a platform admin)
    actor: str | None = None
    action: str | None = None
    resource: str | None = None  # resource type, or "type:id"
    since: float | None = None
    until: float | None = None
    before_seq: int | None = None  # keyset paging, newest first
    size: int = 50

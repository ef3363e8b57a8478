"""Turning submitted task specs into tasks: validation the decoder cannot do, ids, times and
the initial state. The API decodes a request body into ``TaskIn`` structs (msgspec checks
types, ranges and unknown fields with the JSON path); everything else a submission must
satisfy (one of run_at/delay_seconds, a known task type, the handler's own payload rules) is
checked here and reported as ``FieldError`` with the path of the offending field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson

from tierq.config import Settings
from tierq.engine.errors import FieldError
from tierq.engine.handlers.base import HandlerRegistry, PayloadError
from tierq.engine.notify.targets import NotifyIn, check_notify
from tierq.ids import is_valid_id, new_id
from tierq.model import Priority, Task, TaskState

MAX_PRIORITY = 1000
# The furthest ahead a task may be scheduled, by run_at or delay_seconds alike.
MAX_AHEAD_S = 366 * 86400
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
QueueName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
TypeName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
BreakerName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:/-]{1,200}$")]


class TaskIn(msgspec.Struct, forbid_unknown_fields=True):
    type: TypeName
    # A factory, not a default: a default Raw would break the OpenAPI schema generation.
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    queue: QueueName = "default"
    priority: int | str = "MEDIUM"
    run_at: datetime | None = None
    delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_AHEAD_S)] | None = None
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)] | None = None
    name: Name | None = None
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    idempotency_key: Name | None = None
    depends_on: Annotated[list[str], msgspec.Meta(max_length=100)] = []
    notify: NotifyIn | None = None
    # The circuit breaker the task answers to (default: its type, or an http target's host).
    breaker: BreakerName | None = None


def parse_priority(value: int | str, path: str) -> int:
    if isinstance(value, int):
        if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
            raise FieldError(path, f"must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
        return value
    try:
        return int(Priority[value.upper()])
    except KeyError:
        raise FieldError(path, "must be HIGH, MEDIUM, LOW or an integer") from None


def _text_has_nul(spec: TaskIn) -> str | None:
    """The first free-text field holding a NUL (PostgreSQL text cannot store one), or None."""
    if spec.name is not None and "\x00" in spec.name:
        return "name"
    if spec.description is not None and "\x00" in spec.description:
        return "description"
    if spec.idempotency_key is not None and "\x00" in spec.idempotency_key:
        return "idempotency_key"
    return None


# Idempotency keys tierq makes itself (a schedule's ticks) start with this: a client's key
# may not, or it could take a tick's place.
RESERVED_KEY_PREFIX = "tierq:"


def _decode_payload(payload: bytes, prefix: str) -> Any:
    """The payload as a handler will see it. msgspec's Raw accepts JSON that orjson (the
    decoder of ``TaskContext.payload``) refuses, e.g. numbers beyond a double (``1e400``, a
    400-digit integer): such a task could never run, so it is refused here."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise FieldError(f"{prefix}.payload", f"payload cannot be decoded: {exc}") from None


def build_task(
    spec: TaskIn, prefix: str, settings: Settings, registry: HandlerRegistry, now: float
) -> Task:
    """Validate what the decoder cannot, and build the Task (state, id, times)."""
    handler = registry.get(spec.type)
    if handler is None:
        known = ", ".join(registry.names())
        raise FieldError(f"{prefix}.type", f"unknown task type {spec.type!r} (known: {known})")
    field = _text_has_nul(spec)
    if field is not None:
        raise FieldError(f"{prefix}.{field}", "must not contain NUL characters")
    if spec.idempotency_key is not None and spec.idempotency_key.startswith(RESERVED_KEY_PREFIX):
        raise FieldError(
            f"{prefix}.idempotency_key", f"keys starting with {RESERVED_KEY_PREFIX!r} are reserved"
        )
    payload = bytes(spec.payload)
    decoded = _decode_payload(payload, prefix)
    if handler.validate is not None:
        try:
            handler.validate(decoded)
        except PayloadError as exc:
            path = exc.path[len("payload") :] if exc.path.startswith("payload") else exc.path
            raise FieldError(f"{prefix}.payload{path}", exc.message) from None
        except Exception as exc:
            # A user validator's own bug or a plain ValueError: still the client's payload
            # that was refused, so a 422 with the message, never a 500.
            message = str(exc) or type(exc).__name__
            raise FieldError(f"{prefix}.payload", message) from None
    if spec.run_at is not None and spec.delay_seconds is not None:
        raise FieldError(f"{prefix}.run_at", "give run_at or delay_seconds, not both")
    run_at = now
    if spec.run_at is not None:
        when = spec.run_at
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        # Bounded like delay_seconds: beyond year 9999 a time cannot even be shown.
        run_at = max(now, when.timestamp())
        if run_at > now + MAX_AHEAD_S:
            raise FieldError(f"{prefix}.run_at", "must be at most 366 days ahead")
    elif spec.delay_seconds is not None:
        run_at = now + spec.delay_seconds
    for position, dep in enumerate(spec.depends_on):
        if not is_valid_id(dep):
            raise FieldError(f"{prefix}.depends_on[{position}]", "not a task id")
    notify = (
        None if spec.notify is None else check_notify(spec.notify, f"{prefix}.notify", settings)
    )
    # Positional, in Task's field order: keyword construction cost 3x as much per task.
    return Task(
        new_id(now),
        spec.type,
        spec.queue,
        parse_priority(spec.priority, f"{prefix}.priority"),
        payload,
        TaskState.QUEUED if run_at <= now else TaskState.SCHEDULED,
        run_at,
        now,
        now,
        settings.default_max_retries if spec.max_retries is None else spec.max_retries,
        settings.default_timeout_s if spec.timeout_seconds is None else spec.timeout_seconds,
        0,
        0,
        spec.name,
        spec.description,
        spec.idempotency_key,
        tuple(dict.fromkeys(spec.depends_on)),
        notify,
        breaker=spec.breaker,
    )


# Exact spellings only; any other case goes through parse_priority.
_PRIORITY_NAMES: dict[str, int] = {p.name: int(p) for p in Priority}


def build_tasks(
    specs: list[TaskIn], settings: Settings, registry: HandlerRegistry, now: float
) -> list[Task]:
    """``build_task`` of every task of a batch (paths ``$[i]``), the same tasks in the same order.

    The common shape (no payload validator, no run_at / delay_seconds, no depends_on, a
    priority that needs no checking) is built directly: none of the checks it skips could
    fail. Anything else goes through ``build_task``, which also makes every error message."""
    if not specs:
        raise FieldError("$", "a batch needs at least one task")
    if len(specs) > settings.max_batch:
        raise FieldError("$", f"a batch holds at most {settings.max_batch} tasks")
    tasks: list[Task] = []
    append = tasks.append
    get_handler = registry.get
    names = _PRIORITY_NAMES
    queued = TaskState.QUEUED
    max_retries = settings.default_max_retries
    timeout_s = settings.default_timeout_s
    for i, spec in enumerate(specs):
        handler = get_handler(spec.type)
        priority: int | str | None = spec.priority
        if type(priority) is str:
            priority = names.get(priority)
        elif type(priority) is not int or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            priority = None
        if (
            priority is None
            or handler is None
            or handler.validate is not None
            or spec.run_at is not None
            or spec.delay_seconds is not None
            or spec.depends_on
            or spec.notify is not None
            or _text_has_nul(spec) is not None
            or (
                spec.idempotency_key is not None
                and spec.idempotency_key.startswith(RESERVED_KEY_PREFIX)
            )
        ):
            append(build_task(spec, f"$[{i}]", settings, registry, now))
            continue
        payload = bytes(spec.payload)
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError:
            append(build_task(spec, f"$[{i}]", settings, registry, now))  # raises, with the path
            continue
        append(
            Task(
                new_id(now),
                spec.type,
                spec.queue,
                priority,
                payload,
                queued,
                now,
                now,
                now,
                max_retries if spec.max_retries is None else spec.max_retries,
                timeout_s if spec.timeout_seconds is None else spec.timeout_seconds,
                0,
                0,
                spec.name,
                spec.description,
                spec.idempotency_key,
            )
        )
        if spec.breaker is not None:
            tasks[-1].breaker = spec.breaker
    return tasks

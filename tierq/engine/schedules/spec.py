"""A schedule's definition: what the API decodes (``ScheduleIn``, with the seed's aliases),
the checks the decoder cannot make, and the normalised form that is stored (``ScheduleSpec``).

Every check runs at creation (and on every edit, on the merged definition), so a schedule
that was accepted can always fire: the task template goes through the same validation as a
submission (type known, payload accepted by its handler, notify targets allowed).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson

from tierq.config import Settings
from tierq.engine.errors import FieldError
from tierq.engine.handlers.base import HandlerRegistry
from tierq.engine.intake import Name, QueueName, TaskIn, TypeName, build_task
from tierq.engine.notify.targets import NotifyIn
from tierq.engine.schedules.cron import Cron, CronError, FixedRate, Timing, zone

# The longest catch-up window and interval accepted: a year.
MAX_WINDOW_S = 366 * 86400


class Overlap(enum.StrEnum):
    ALLOW = "allow"  # fire whatever the previous run is doing
    SKIP = "skip"  # do not fire while the previous run is not terminal
    QUEUE_ONE = "queue_one"  # keep at most one run waiting to start
    REPLACE = "replace"  # cancel the previous run if it has not finished, then fire


class Catchup(enum.StrEnum):
    NONE = "none"  # ticks missed while nobody could fire them are skipped
    LATEST = "latest"  # one run for the latest missed tick
    ALL = "all"  # one run per missed tick (within the window)


class TemplateIn(msgspec.Struct, forbid_unknown_fields=True):
    """The task each tick creates: a submission without what belongs to one run (run_at,
    delay, idempotency key, dependencies)."""

    type: TypeName | None = None
    payload: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty: not given
    queue: QueueName = "default"
    priority: int | str = "MEDIUM"
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)] | None = None
    notify: NotifyIn | None = None
    name: Name | None = None
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class ScheduleIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /api/v1/schedules`` (and a PATCH merged onto the current definition)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:@-]{1,200}$")]
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    cron: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    every_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOW_S)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: Annotated[int, msgspec.Meta(ge=1)] | None = None
    jitter_seconds: Annotated[int, msgspec.Meta(ge=0, le=86400)] = 0
    task: TemplateIn | None = None
    overlap: Overlap = Overlap.ALLOW
    catchup: Catchup = Catchup.LATEST
    catchup_window_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_WINDOW_S)] = 3600
    paused: bool = False
    pause_after_failures: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    # Seed-compatible spellings, folded into the fields above.
    cron_expression: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    handler: TypeName | None = None
    parameters: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty: not given
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None


class TaskTemplate(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    # A factory, not a default: a default Raw would break the OpenAPI schema generation.
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    queue: str = "default"
    priority: int | str = "MEDIUM"
    max_retries: int | None = None
    timeout_seconds: float | None = None
    notify: NotifyIn | None = None
    name: str | None = None
    description: str | None = None

    def task_in(self) -> TaskIn:
        return TaskIn(
            type=self.type,
            payload=self.payload,
            queue=self.queue,
            priority=self.priority,
            max_retries=self.max_retries,
            timeout_seconds=self.timeout_seconds,
            notify=self.notify,
            name=self.name,
            description=self.description,
        )


class ScheduleSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """The stored definition (times as POSIX seconds). ``anchor`` is tick 0 of a fixed rate."""

    name: str
    task: TaskTemplate
    anchor: float
    cron: str | None = None
    every_seconds: int | None = None
    timezone: str = "UTC"
    description: str | None = None
    start_at: float | None = None
    end_at: float | None = None
    max_runs: int | None = None
    jitter_seconds: int = 0
    overlap: Overlap = Overlap.ALLOW
    catchup: Catchup = Catchup.LATEST
    catchup_window_seconds: int = 3600
    pause_after_failures: int = 0

    def timing(self) -> Timing:
        if self.cron is not None:
            return Cron(self.cron, self.timezone)
        assert self.every_seconds is not None
        return FixedRate(self.every_seconds, self.anchor)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ScheduleSpec)


def encode_spec(spec: ScheduleSpec) -> bytes:
    return _encoder.encode(spec)


def encode_template(template: TaskTemplate) -> bytes:
    return _encoder.encode(template)


def decode_spec(data: bytes) -> ScheduleSpec:
    return _decoder.decode(data)


def _seconds(when: datetime | None) -> float | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def check_cron(text: str, timezone: str, path: str) -> Cron:
    """The expression parsed, or a FieldError naming the field of the expression at fault."""
    try:
        zone(timezone)
    except CronError as exc:
        raise FieldError("$.timezone", str(exc)) from None
    try:
        return Cron(text, timezone)
    except CronError as exc:
        where = f" ({exc.field} field)" if exc.field else ""
        raise FieldError(path, f"invalid cron expression{where}: {exc}") from None


def build_spec(
    body: ScheduleIn,
    settings: Settings,
    registry: HandlerRegistry,
    now: float,
    anchor: float | None = None,
) -> ScheduleSpec:
    """Validate a decoded definition; ``anchor`` is kept from the stored one on an edit."""
    cron = body.cron
    cron_path = "$.cron"
    if body.cron_expression is not None:
        if cron is not None:
            raise FieldError("$.cron_expression", "give cron or cron_expression, not both")
        cron, cron_path = body.cron_expression, "$.cron_expression"
    if cron is not None and body.every_seconds is not None:
        raise FieldError("$.every_seconds", "give cron or every_seconds, not both")
    if cron is None and body.every_seconds is None:
        raise FieldError("$.cron", "give cron (an expression) or every_seconds (a fixed rate)")
    if cron is not None:
        cron = check_cron(cron, body.timezone, cron_path).text
    else:
        try:
            zone(body.timezone)
        except CronError as exc:
            raise FieldError("$.timezone", str(exc)) from None
    start_at, end_at = _seconds(body.start_at), _seconds(body.end_at)
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise FieldError("$.end_at", "must be after start_at")
    template = _template(body)
    # Validated exactly as a submission of it would be (the built task is thrown away).
    build_task(template.task_in(), "$.task", settings, registry, now)
    if anchor is None:
        anchor = start_at if start_at is not None else float(int(now))
    return ScheduleSpec(
        name=body.name,
        task=template,
        anchor=anchor,
        cron=cron,
        every_seconds=None if cron is not None else body.every_seconds,
        timezone=body.timezone,
        description=body.description,
        start_at=start_at,
        end_at=end_at,
        max_runs=body.max_runs,
        jitter_seconds=body.jitter_seconds,
        overlap=body.overlap,
        catchup=body.catchup,
        catchup_window_seconds=body.catchup_window_seconds,
        pause_after_failures=body.pause_after_failures,
    )


def _template(body: ScheduleIn) -> TaskTemplate:
    given = body.task or TemplateIn()
    task_type = given.type
    if body.handler is not None:
        if task_type is not None:
            raise FieldError("$.handler", "give task.type or handler, not both")
        task_type = body.handler
    if task_type is None:
        raise FieldError("$.task.type", "the task type is required (task.type, or handler)")
    payload = given.payload if len(given.payload) else None
    if len(body.parameters):
        if payload is not None:
            raise FieldError("$.parameters", "give task.payload or parameters, not both")
        payload = body.parameters
    max_retries = given.max_retries
    if body.max_retries is not None:
        if max_retries is not None:
            raise FieldError("$.max_retries", "give task.max_retries or max_retries, not both")
        max_retries = body.max_retries
    return TaskTemplate(
        type=task_type,
        payload=payload if payload is not None else msgspec.Raw(b"{}"),
        queue=given.queue,
        priority=given.priority,
        max_retries=max_retries,
        timeout_seconds=given.timeout_seconds,
        notify=given.notify,
        name=given.name,
        description=given.description,
    )


def as_input(spec: ScheduleSpec, paused: bool) -> dict[str, Any]:
    """The stored definition in ``ScheduleIn``'s shape (plain JSON values), for an edit to
    merge its fields onto."""
    doc: dict[str, Any] = orjson.loads(encode_spec(spec))
    doc.pop("anchor", None)
    for key in ("start_at", "end_at"):
        if doc.get(key) is not None:
            doc[key] = datetime.fromtimestamp(doc[key], UTC).isoformat()
    doc["paused"] = paused
    return doc

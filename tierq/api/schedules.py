"""Routes of schedules (``/api/v1/schedules``): decode, one call of the engine's schedules
service, encode. No scheduling logic here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from tierq.api.auth.access import AUDIT_RESOURCE, PRINCIPAL
from tierq.api.errors import ApiError
from tierq.api.permissions import Permission
from tierq.api.routes import ENGINE, json_response, read_json_body, scope, time_param
from tierq.api.routing import Param, Route
from tierq.api.schemas import decode_as, task_out
from tierq.api.shapes import (
    FireTime,
    PreviewOut,
    RunOut,
    RunsOut,
    ScheduleOut,
    SchedulePage,
    TaskOut,
    TemplateOut,
)
from tierq.engine.errors import FieldError
from tierq.engine.schedules.cron import zone
from tierq.engine.schedules.service import Schedules, ScheduleView
from tierq.engine.schedules.spec import ScheduleIn
from tierq.ids import is_valid_id
from tierq.model import ScheduleFilter, ScheduleRun
from tierq.timefmt import iso

MAX_PAGE_SIZE = 500
MAX_RUNS_PAGE = 1000

_schedule_in = msgspec.json.Decoder(ScheduleIn)
# A PATCH names any fields of the creation body; the merged definition is checked whole.
SchedulePatch = Annotated[
    dict[str, Any], msgspec.Meta(description="any fields of ScheduleIn", min_length=1)
]
_patch_in = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _schedules(request: web.Request) -> Schedules:
    schedules = request.app[ENGINE].schedules
    if schedules is None:
        raise ApiError(404, "not_found", "schedules are not available on this server")
    return schedules


def _schedule_id(request: web.Request) -> str:
    schedule_id = request.match_info["schedule_id"].lower()
    if not is_valid_id(schedule_id):
        raise ApiError(400, "bad_id", "not a schedule id (UUID expected)", {"id": schedule_id})
    return schedule_id


def _local(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="milliseconds")


def run_out(run: ScheduleRun, tz: ZoneInfo) -> RunOut:
    out = RunOut(iso(run.tick), _local(run.tick, tz), run.reason is not None)
    if run.reason is not None:
        out.skipped_at = iso(run.at)
        out.reason = run.reason.value
    else:
        out.fired_at = iso(run.at)
        out.task_id = run.task_id
        out.status = None if run.state is None else run.state.value
        out.trigger = run.trigger
    return out


def fire_times(times: list[float], tz: ZoneInfo) -> list[FireTime]:
    return [FireTime(_local(t, tz), iso(t)) for t in times]


def schedule_out(view: ScheduleView) -> ScheduleOut:
    s, spec = view.schedule, view.spec
    tz = zone(spec.timezone)
    template = spec.task
    return ScheduleOut(
        id=s.id,
        name=s.name,
        description=spec.description,
        cron=spec.cron,
        every_seconds=spec.every_seconds,
        timezone=spec.timezone,
        start_at=iso(spec.start_at),
        end_at=iso(spec.end_at),
        max_runs=spec.max_runs,
        jitter_seconds=spec.jitter_seconds,
        task=TemplateOut(
            type=template.type,
            payload=template.payload,
            queue=template.queue,
            priority=template.priority,
            max_retries=template.max_retries,
            timeout_seconds=template.timeout_seconds,
            notify=None if template.notify is None else msgspec.to_builtins(template.notify),
            name=template.name,
            description=template.description,
        ),
        overlap=spec.overlap.value,
        catchup=spec.catchup.value,
        catchup_window_seconds=spec.catchup_window_seconds,
        pause_after_failures=spec.pause_after_failures,
        paused=s.paused,
        state=view.state,
        runs=s.runs,
        consecutive_failures=s.failures,
        last_tick=iso(s.last_tick),
        next_runs=fire_times(view.next_runs, tz),
        last_run=None if view.last_run is None else run_out(view.last_run, tz),
        created_at=iso(s.created_at),
        updated_at=iso(s.updated_at),
        version=s.version,
        tenant=s.tenant,
    )


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            400,
            "bad_parameter",
            f"{name} must be an integer from {low} to {high}",
            {"parameter": name},
        )
    return value


async def create_schedule(request: web.Request) -> web.Response:
    body = decode_as(_schedule_in, await read_json_body(request))
    view = await _schedules(request).create(body, request[PRINCIPAL].owner)
    request[AUDIT_RESOURCE] = view.schedule.id
    return json_response(schedule_out(view), 201)


async def list_schedules(request: web.Request) -> web.Response:
    query = request.query
    paused: bool | None = None
    if query.get("paused"):
        if query["paused"] not in ("true", "false"):
            raise ApiError(
                400, "bad_parameter", "paused must be true or false", {"parameter": "paused"}
            )
        paused = query["paused"] == "true"
    after = query.get("after") or None
    if after is not None and not is_valid_id(after.lower()):
        raise ApiError(400, "bad_parameter", "after must be a schedule id", {"parameter": "after"})
    flt = ScheduleFilter(
        tenant=scope(request),
        paused=paused,
        name_prefix=query.get("name") or None,
        after_id=after.lower() if after else None,
        size=_int(request, "size", 50, 1, MAX_PAGE_SIZE),
    )
    views, more = await _schedules(request).page(flt)
    items = [schedule_out(v) for v in views]
    return json_response(SchedulePage(items, more, items[-1].id if more else None))


async def preview_schedule(request: web.Request) -> web.Response:
    query = request.query
    every: int | None = None
    if query.get("every_seconds"):
        every = _int(request, "every_seconds", 1, 1, 366 * 86400)
    timezone = query.get("timezone") or "UTC"
    times = _schedules(request).preview(
        query.get("cron") or None,
        every,
        timezone,
        _int(request, "count", 5, 1, 100),
        time_param(request, "after"),
    )
    tz = zone(timezone)
    return json_response(
        PreviewOut(query.get("cron") or None, every, timezone, fire_times(times, tz))
    )


async def get_schedule(request: web.Request) -> web.Response:
    view = await _schedules(request).get(_schedule_id(request), scope(request))
    return json_response(schedule_out(view))


async def update_schedule(request: web.Request) -> web.Response:
    schedule_id = _schedule_id(request)
    patch = decode_as(_patch_in, await read_json_body(request))
    if not patch:
        raise FieldError("$", "give at least one field to change")
    for key in ("id", "state", "runs", "version", "created_at", "updated_at", "last_tick"):
        if key in patch:
            raise FieldError(f"$.{key}", "cannot be set")
    view = await _schedules(request).update(schedule_id, patch, scope(request))
    return json_response(schedule_out(view))


async def delete_schedule(request: web.Request) -> web.Response:
    await _schedules(request).delete(_schedule_id(request), scope(request))
    return web.Response(status=204)


async def pause_schedule(request: web.Request) -> web.Response:
    view = await _schedules(request).set_paused(_schedule_id(request), True, scope(request))
    return json_response(schedule_out(view))


async def resume_schedule(request: web.Request) -> web.Response:
    view = await _schedules(request).set_paused(_schedule_id(request), False, scope(request))
    return json_response(schedule_out(view))


async def trigger_schedule(request: web.Request) -> web.Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ApiError(
            400,
            "bad_header",
            "Idempotency-Key must be 1 to 200 characters",
            {"header": "Idempotency-Key"},
        )
    submitted = await _schedules(request).trigger(_schedule_id(request), key, scope(request))
    return json_response(task_out(submitted.task), 201 if submitted.created else 200)


async def schedule_runs(request: web.Request) -> web.Response:
    schedules = _schedules(request)
    schedule_id = _schedule_id(request)
    limit = _int(request, "limit", 50, 1, MAX_RUNS_PAGE)
    view = await schedules.get(schedule_id, scope(request))
    runs = await schedules.runs(schedule_id, time_param(request, "before"), limit, scope(request))
    tz = zone(view.spec.timezone)
    items = [run_out(r, tz) for r in runs]
    more = len(runs) == limit
    return json_response(RunsOut(schedule_id, items, items[-1].tick if more and items else None))


_READ, _WRITE = Permission.SCHEDULES_READ, Permission.SCHEDULES_WRITE
_ALL, _ONE = "/api/v1/schedules", "/api/v1/schedules/{schedule_id}"
_SCHEDULE = ((200, ScheduleOut),)
ROUTES = [
    Route(
        "POST",
        _ALL,
        create_schedule,
        _WRITE,
        "Create a cron or fixed-rate schedule",
        body=ScheduleIn,
        answers=((201, ScheduleOut),),
    ),
    Route(
        "GET",
        _ALL,
        list_schedules,
        _READ,
        "List schedules",
        answers=((200, SchedulePage),),
        params=(
            Param("paused", str, "true or false"),
            Param("name", str, "name prefix"),
            Param("after", str, "next_after of the previous page"),
            Param("size", int, f"page size, 1 to {MAX_PAGE_SIZE} (default 50)"),
        ),
    ),
    Route(
        "GET",
        "/api/v1/schedules/preview",
        preview_schedule,
        _READ,
        "Check a cron expression and list its next fire times",
        answers=((200, PreviewOut),),
        params=(
            Param("cron", str, "a cron expression (5 or 6 fields, or @hourly and the like)"),
            Param("every_seconds", int, "a fixed rate instead of cron"),
            Param("timezone", str, "IANA zone name (default UTC)"),
            Param("count", int, "how many fire times, 1 to 100 (default 5)"),
            Param("after", str, "list fire times after this ISO 8601 time (default now)"),
        ),
    ),
    Route(
        "GET",
        _ONE,
        get_schedule,
        _READ,
        "Get a schedule with its next and last runs",
        answers=_SCHEDULE,
    ),
    Route(
        "PATCH",
        _ONE,
        update_schedule,
        _WRITE,
        "Change a schedule",
        body=SchedulePatch,
        answers=_SCHEDULE,
        description="Any fields of the creation body; the result is checked as a whole.",
    ),
    Route("DELETE", _ONE, delete_schedule, _WRITE, "Delete a schedule", answers=((204, None),)),
    Route("POST", _ONE + "/pause", pause_schedule, _WRITE, "Pause a schedule", answers=_SCHEDULE),
    Route(
        "POST", _ONE + "/resume", resume_schedule, _WRITE, "Resume a schedule", answers=_SCHEDULE
    ),
    Route(
        "POST",
        _ONE + "/trigger",
        trigger_schedule,
        _WRITE,
        "Run a schedule now",
        answers=((201, TaskOut), (200, TaskOut)),
        params=(Param("Idempotency-Key", str, "a repeated trigger fires once", header=True),),
    ),
    Route(
        "GET",
        _ONE + "/runs",
        schedule_runs,
        _READ,
        "A schedule's fired and skipped ticks",
        answers=((200, RunsOut),),
        params=(
            Param("before", str, "ticks before this ISO 8601 time (next_before of a page)"),
            Param("limit", int, f"1 to {MAX_RUNS_PAGE} (default 50)"),
        ),
    ),
]

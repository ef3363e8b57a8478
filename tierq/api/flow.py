"""Routes of flow control: queues (``/api/v1/queues``: depth, pause, resume, limits),
circuit breakers (``/api/v1/breakers``: state, reset, force open) and bulk operations on tasks
by filter (``POST /api/v1/tasks/cancel`` and ``/retry``).

Queue controls and breakers are the whole deployment's: they are changed by an admin of the
platform (tenant ``*``) or of the default tenant (the deployment's own, and the only one of a
single-tenant deployment), never by another tenant's; a tenant's caller reads its own tasks'
counts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from tierq.api.auth.access import AUDIT_CHANGES, AUDIT_RESOURCE, PRINCIPAL
from tierq.api.errors import ApiError
from tierq.api.permissions import Permission
from tierq.api.routes import (
    ENGINE,
    FILTER_PARAMS,
    json_response,
    parse_filter,
    read_json_body,
    scope,
    time_param,
)
from tierq.api.routing import Param, Route
from tierq.api.schemas import decode_as, encode
from tierq.api.shapes import (
    BreakerList,
    BreakerOut,
    BulkOut,
    LimitsOut,
    QueueLimitsOut,
    QueueList,
    QueueOut,
    RateOut,
)
from tierq.config.checks import (
    MAX_QUEUE_RUNNING,
    MAX_RATE_LIMIT,
    MAX_RATE_WINDOW_S,
    parse_queue_limit,
)
from tierq.engine.errors import FieldError
from tierq.engine.flow.queues import queue_views
from tierq.model import DEFAULT_TENANT
from tierq.storage.breakers import CLOSED, OPEN, BreakerState
from tierq.storage.queues import QueueControl
from tierq.timefmt import iso

MAX_NAME = 200
MAX_IDEMPOTENCY_KEY = 200


class RateIn(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_RATE_LIMIT)]
    per_seconds: Annotated[float, msgspec.Meta(gt=0, le=MAX_RATE_WINDOW_S)]


class QueueLimitsIn(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /api/v1/queues/{queue}``: a field left out keeps its value; null removes it."""

    max_running: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUEUE_RUNNING)] | UnsetType | None = UNSET
    rate: RateIn | UnsetType | None = UNSET


_limits_in = msgspec.json.Decoder(QueueLimitsIn)


def _platform_only(request: web.Request) -> None:
    if request[PRINCIPAL].owner != DEFAULT_TENANT:
        raise ApiError(
            403,
            "forbidden",
            "queue controls and breakers are changed by an admin of the platform or of the "
            "default tenant",
        )


def _name(request: web.Request, part: str) -> str:
    name = request.match_info[part]
    if not name or len(name) > MAX_NAME:
        raise ApiError(400, "bad_parameter", f"{part} must be 1..{MAX_NAME} characters")
    return name


def limits_out(control: QueueControl | None) -> LimitsOut:
    if control is None:
        return LimitsOut(None, None)
    rate = None
    if control.rate_limit is not None and control.rate_per_s is not None:
        rate = RateOut(control.rate_limit, control.rate_per_s)
    return LimitsOut(control.max_running, rate)


def queue_out(name: str, control: QueueControl) -> QueueLimitsOut:
    limits = limits_out(control)
    return QueueLimitsOut(name, control.paused, limits.max_running, limits.rate)


def breaker_out(state: BreakerState) -> BreakerOut:
    return BreakerOut(
        key=state.key,
        state=state.state,
        window_calls=state.calls,
        window_failures=state.failures,
        trips=state.trips,
        forced=state.forced,
        opened_at=iso(state.opened_at),
        next_probe_at=iso(state.next_probe_at) if state.state != CLOSED else None,
        probes_granted=state.probes_granted,
        probe_successes=state.probe_successes,
    )


# ---- queues ----------------------------------------------------------------------------------


async def list_queues(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    flow = engine.flow
    views = await queue_views(
        flow.queue_store,
        flow.controls,
        engine.dispatch,
        engine.reports.throughput,
        time.time(),
        scope(request),
    )
    items = [
        QueueOut(
            name=v.name,
            counts=v.counts,
            running=v.running,
            paused=v.paused,
            limits=limits_out(v.control),
            oldest_pending_age_seconds=v.oldest_pending_age_s,
            finished_last_minute=v.finished_last_minute,
        )
        for v in views
    ]
    return json_response(QueueList(items))


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    _platform_only(request)
    queue = _name(request, "queue")
    request[AUDIT_RESOURCE] = queue
    control = await request.app[ENGINE].flow.controls.change(queue, paused=paused)
    return json_response(queue_out(queue, control))


async def pause_queue(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


async def resume_queue(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


async def patch_queue(request: web.Request) -> web.Response:
    _platform_only(request)
    queue = _name(request, "queue")
    request[AUDIT_RESOURCE] = queue
    given = decode_as(_limits_in, await read_json_body(request))
    spec = msgspec.to_builtins(given)  # the fields given (UNSET ones are left out)
    controls = request.app[ENGINE].flow.controls
    current = controls.get(queue)
    partial = (
        None if current is None else (current.max_running, current.rate_limit, current.rate_per_s)
    )
    try:
        limits = parse_queue_limit(spec, "", partial)
    except ValueError as exc:
        path, _, message = str(exc).partition(": ")
        raise FieldError(f"$.{path}" if path != "$" else "$", message) from None
    request[AUDIT_CHANGES] = msgspec.json.encode(spec)
    control = await controls.change(queue, limits=limits)
    return json_response(queue_out(queue, control))


# ---- breakers --------------------------------------------------------------------------------


async def list_breakers(request: web.Request) -> web.Response:
    flow = request.app[ENGINE].flow
    states = await flow.breaker_store.states(time.time())
    return json_response(BreakerList(flow.breakers is not None, [breaker_out(s) for s in states]))


async def _set_breaker(request: web.Request, state: str) -> web.Response:
    _platform_only(request)
    key = _name(request, "key")
    request[AUDIT_RESOURCE] = key
    breakers = request.app[ENGINE].flow.breakers
    if breakers is None:
        raise ApiError(409, "breakers_disabled", "circuit breakers are off (TIERQ_BREAKERS)")
    return json_response(breaker_out(await breakers.set_state(key, state)))


async def reset_breaker(request: web.Request) -> web.Response:
    return await _set_breaker(request, CLOSED)


async def open_breaker(request: web.Request) -> web.Response:
    return await _set_breaker(request, OPEN)


# ---- bulk operations -------------------------------------------------------------------------


async def _bulk(request: web.Request, action: str) -> web.Response:
    """Filters as for the task list (query parameters), plus ``since`` (tasks created then or
    later). With an Idempotency-Key header, a repeated call answers what the first did, or 409
    while the first still runs."""
    flt = parse_filter(request)
    since = time_param(request, "since")
    engine = request.app[ENGINE]
    store = engine.flow.queue_store
    key = request.headers.get("Idempotency-Key")
    tenant = scope(request) or "*"
    if key is None:
        changed = await engine.actions.bulk(flt, action, since)
        return json_response(BulkOut(action, changed))
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400, "bad_header", f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters"
        )
    key = f"{action}:{key}"
    stored = await store.begin_operation(tenant, key, time.time())
    if stored == b"":
        raise ApiError(
            409,
            "in_progress",
            "a call with this Idempotency-Key is still running; retry later for its answer",
        )
    if stored is not None:
        return web.Response(
            body=stored, content_type="application/json", headers={"Idempotent-Replay": "true"}
        )
    try:
        changed = await engine.actions.bulk(flt, action, since)
    except BaseException:
        # No answer to keep: a retry may run it. (What it changed stays changed; cancel and
        # retry are idempotent in effect.)
        await asyncio.shield(store.abandon_operation(tenant, key))
        raise
    answer = encode(BulkOut(action, changed))
    await store.finish_operation(tenant, key, answer)
    return web.Response(body=answer, content_type="application/json")


async def bulk_cancel(request: web.Request) -> web.Response:
    return await _bulk(request, "cancel")


async def bulk_retry(request: web.Request) -> web.Response:
    return await _bulk(request, "retry")


_QUEUE = "/api/v1/queues/{queue}"
_BREAKER = "/api/v1/breakers/{key}"
_ADMIN = Permission.FLOW_ADMIN
_LIMITS = ((200, QueueLimitsOut),)
_BULK_PARAMS = (
    *FILTER_PARAMS,
    Param("since", str, "only tasks created at or after this ISO 8601 time"),
    Param("Idempotency-Key", str, "a repeated call answers what the first did", header=True),
)
ROUTES = [
    Route(
        "GET",
        "/api/v1/queues",
        list_queues,
        Permission.TASKS_READ,
        "Queues: depth, limits",
        answers=((200, QueueList),),
    ),
    Route(
        "PATCH",
        _QUEUE,
        patch_queue,
        _ADMIN,
        "Set a queue's limits",
        body=QueueLimitsIn,
        answers=_LIMITS,
    ),
    Route("POST", _QUEUE + "/pause", pause_queue, _ADMIN, "Pause a queue", answers=_LIMITS),
    Route("POST", _QUEUE + "/resume", resume_queue, _ADMIN, "Resume a queue", answers=_LIMITS),
    Route(
        "GET",
        "/api/v1/breakers",
        list_breakers,
        Permission.TASKS_READ,
        "Circuit breakers",
        answers=((200, BreakerList),),
    ),
    Route(
        "POST",
        _BREAKER + "/reset",
        reset_breaker,
        _ADMIN,
        "Close (reset) a breaker",
        answers=((200, BreakerOut),),
    ),
    Route(
        "POST",
        _BREAKER + "/open",
        open_breaker,
        _ADMIN,
        "Force a breaker open",
        answers=((200, BreakerOut),),
    ),
    Route(
        "POST",
        "/api/v1/tasks/cancel",
        bulk_cancel,
        Permission.TASKS_OPERATE,
        "Cancel by filter",
        answers=((200, BulkOut),),
        params=_BULK_PARAMS,
    ),
    Route(
        "POST",
        "/api/v1/tasks/retry",
        bulk_retry,
        Permission.TASKS_OPERATE,
        "Retry by filter",
        answers=((200, BulkOut),),
        params=_BULK_PARAMS,
    ),
]

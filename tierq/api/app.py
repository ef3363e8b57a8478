"""The aiohttp application: routes, middlewares (the edge layer: request id, errors and
metrics; then auth) and the engine's lifecycle tied to the app's start-up and clean-up."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
import uuid
from typing import Any

from aiohttp import web

from tierq import tracing
from tierq.api.auth.access import ACCESS, Access, access_middleware
from tierq.api.docs import OPENAPI
from tierq.api.errors import REQUEST_ID, SERVER_NAME, Handler, to_response
from tierq.api.openapi import document
from tierq.api.routes import ENGINE, SETTINGS
from tierq.api.schemas import encode
from tierq.api.scrape import METRICS
from tierq.api.table import ROUTES, add_routes, by_method_and_path
from tierq.config import Settings
from tierq.engine.engine import Engine
from tierq.engine.handlers import build_registry, close_registry
from tierq.logs import REQUEST_ID as LOG_REQUEST_ID
from tierq.logs import set_node as set_log_node
from tierq.metrics import Metrics
from tierq.storage.base import RecordStore
from tierq.storage.factory import (
    make_access_stores,
    make_breaker_store,
    make_dispatch,
    make_event_log,
    make_event_sink,
    make_leader,
    make_notification_store,
    make_queue_store,
    make_rate_limiter,
    make_record_store,
    make_rollup_store,
    make_schedule_store,
)
from tierq.storage.instrumented import (
    InstrumentedRecordStore,
    instrument_dispatch,
    instrument_record_store,
)

log = logging.getLogger("tierq.api")


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def build_engine(settings: Settings, metrics: Metrics) -> Engine:
    # Every call into a tier is timed and counted here, once, whatever the backend.
    backend = make_record_store(settings)
    store = instrument_record_store(backend, metrics)
    raw_dispatch = make_dispatch(settings, store)
    dispatch = instrument_dispatch(raw_dispatch, metrics)
    registry = build_registry(settings)
    node_id = settings.node_id or default_node_id()
    set_log_node(node_id)
    return Engine(
        settings,
        store,
        dispatch,
        registry,
        metrics,
        node_id=node_id,
        event_log=make_event_log(settings),
        notification_store=make_notification_store(backend),
        event_sink=make_event_sink(settings),
        schedule_store=make_schedule_store(backend),
        leader=make_leader(settings, raw_dispatch),
        queue_store=make_queue_store(backend),
        breaker_store=make_breaker_store(settings, raw_dispatch),
        rollup_store=make_rollup_store(backend),
    )


def record_backend(store: RecordStore) -> RecordStore:
    """The backend under the metrics wrapper: the access stores share its connections."""
    return store.inner if isinstance(store, InstrumentedRecordStore) else store


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


# Request ids only need to be unique across replicas: a random per-process prefix and a
# counter, instead of a uuid4() (a getrandom() call) per request.
_REQUEST_PREFIX = uuid.uuid4().hex[:12]
_request_numbers = itertools.count(1)


def edge_middleware(metrics: Metrics) -> web.middleware:  # type: ignore[valid-type]
    """The outermost layer: request id, error shaping and HTTP metrics. One layer, not three:
    three nested middlewares cost ~45 us per request against a bare aiohttp app (20% of
    aiohttp's own cost per request, measured at 1,500 GET/s).

    What must stay true: every error leaves through ``to_response`` (no traceback reaches a
    client), the metrics count the status actually sent, and every answer carries the
    request id, errors included."""
    # Metric children per (route, status): labels() takes a lock and builds a key each call.
    children: dict[tuple[str, int], tuple[Any, Any]] = {}

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get("X-Request-ID") or (
            f"{_REQUEST_PREFIX}-{next(_request_numbers):x}"
        )
        request[REQUEST_ID] = request_id = request_id[:64]
        LOG_REQUEST_ID.set(request_id)  # this request's task only: its log lines carry it
        route = _route_name(request)
        if tracing.ENABLED:
            with tracing.server_span(request.method, route, request.headers) as span:
                response = await _answer(handler, request)
                span.set_attribute("http.response.status_code", response.status)
        else:
            response = await _answer(handler, request)
        child = children.get((route, response.status))
        if child is None:
            child = children[(route, response.status)] = (
                metrics.http_requests.labels(route, str(response.status)),
                metrics.http_seconds.labels(route),
            )
        child[0].inc()
        child[1].observe(time.perf_counter() - started)
        if not response.prepared:  # a stream sent its headers already (it set its own id)
            response.headers["X-Request-ID"] = request_id
            response.headers["Server"] = SERVER_NAME
        return response

    return edge


async def _answer(handler: Handler, request: web.Request) -> web.StreamResponse:
    """The handler's response, or the error response it raised."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return to_response(exc, request)
    except Exception as exc:
        return to_response(exc, request)


def create_app(
    settings: Settings, engine: Engine | None = None, metrics: Metrics | None = None
) -> web.Application:
    metrics = metrics or (engine.metrics if engine is not None else Metrics())
    engine = engine or build_engine(settings, metrics)
    middlewares = [edge_middleware(metrics), access_middleware(by_method_and_path())]
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[ENGINE] = engine
    app[SETTINGS] = settings
    app[METRICS] = metrics
    keys, audit = make_access_stores(record_backend(engine.store))
    app[ACCESS] = Access(settings, keys, audit, make_rate_limiter(settings), metrics)
    add_routes(app)
    app[OPENAPI] = encode(document(ROUTES))

    async def start_engine(app: web.Application) -> None:
        await app[ENGINE].start()  # opens the record store the access stores use
        await app[ACCESS].start()

    async def stop_engine(app: web.Application) -> None:
        try:
            await app[ACCESS].stop()  # its last audit rows and key uses, while the store is open
            await app[ENGINE].stop()
        finally:
            await close_registry(app[ENGINE].registry)

    async def end_streams(app: web.Application) -> None:
        # Before the server waits for open requests: live streams would never end.
        app[ENGINE].feed.close_all()

    app.on_startup.append(start_engine)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(stop_engine)
    return app

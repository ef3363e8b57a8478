"""Routes an operator and a dashboard read to judge the queue: outcomes over time
(``GET /api/v1/tasks/metrics``, ``GET /health/metrics``), a health summary of the queues
(``GET /api/v1/tasks/health``), and ``POST /health/recovery`` (run the recovery passes now).
The figures come from the engine (per-minute rollups, queue views); nothing is computed
here but the verdict's thresholds."""

from __future__ import annotations

import time

from aiohttp import web

from tierq.api.auth.access import PRINCIPAL
from tierq.api.errors import ApiError
from tierq.api.permissions import Permission
from tierq.api.routes import ENGINE, json_response, scope, time_param
from tierq.api.routing import Param, Route
from tierq.api.shapes import QueueHealth, TasksHealth
from tierq.engine.flow.queues import queue_views
from tierq.engine.recovery import RecoveryRun, recover_now
from tierq.engine.rollups import MetricsReport, MetricsRollups, Window
from tierq.model import DEFAULT_TENANT
from tierq.storage.breakers import OPEN

MAX_WINDOW_S = 7 * 86400  # rollups are kept 8 days
MAX_BUCKETS = 1000
# The verdict of /api/v1/tasks/health: a queue whose oldest due task waited longer, or whose
# last 15 minutes failed more than this share of the tasks that ended, makes it degraded.
STALE_QUEUE_S = 300.0
FAILING_RATE = 0.5
HEALTH_WINDOW_S = 900


def _rollups(request: web.Request) -> MetricsRollups:
    rollups = request.app[ENGINE].reports.rollups
    if rollups is None:
        raise ApiError(
            404, "metrics_off", "task metrics are off on this server (TIERQ_METRICS_ROLLUPS)"
        )
    return rollups


def _bucket(request: web.Request, span: float) -> int:
    raw = request.query.get("bucket_seconds")
    default = max(60, int(span // 60 // 60) * 60 or 60)  # about 60 buckets
    try:
        bucket = int(raw) if raw else default
    except ValueError:
        bucket = 0
    if bucket < 60 or bucket % 60 or span / bucket > MAX_BUCKETS:
        raise ApiError(
            400,
            "bad_parameter",
            f"bucket_seconds must be a multiple of 60, at most {MAX_BUCKETS} buckets per window",
            {"parameter": "bucket_seconds"},
        )
    return bucket


async def _report(request: web.Request, since: float, until: float) -> web.Response:
    if not until > since or until - since > MAX_WINDOW_S:
        raise ApiError(
            400,
            "bad_parameter",
            f"the window must end after it starts and span at most {MAX_WINDOW_S // 86400} days",
            {"parameter": "from_time"},
        )
    bucket = _bucket(request, until - since)
    report = await _rollups(request).report(since, until, bucket, scope(request))
    return json_response(report)


async def tasks_metrics(request: web.Request) -> web.Response:
    now = time.time()
    until = time_param(request, "to_time") or now
    since = time_param(request, "from_time") or until - 3600
    return await _report(request, since, until)


async def health_metrics(request: web.Request) -> web.Response:
    raw = request.query.get("hours") or "24"
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if not 0 < hours <= MAX_WINDOW_S / 3600:
        raise ApiError(
            400,
            "bad_parameter",
            f"hours must be a number above 0 and at most {MAX_WINDOW_S // 3600}",
            {"parameter": "hours"},
        )
    now = time.time()
    return await _report(request, now - hours * 3600, now)


async def tasks_health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    flow = engine.flow
    now = time.time()
    views = await queue_views(
        flow.queue_store,
        flow.controls,
        engine.dispatch,
        engine.reports.throughput,
        now,
        scope(request),
    )
    health = await engine.reports.health()
    reasons = [f"{tier} {state}" for tier, state in health.checks.items() if state != "ok"]
    queues = [
        QueueHealth(
            v.name,
            v.counts.get("queued", 0),
            v.running,
            v.counts.get("failed", 0),
            v.paused,
            v.oldest_pending_age_s,
            v.finished_last_minute,
        )
        for v in views
    ]
    for q in queues:
        if (
            q.oldest_pending_age_seconds is not None
            and q.oldest_pending_age_seconds > STALE_QUEUE_S
        ):
            reasons.append(
                f"queue {q.name}: oldest due task waited {q.oldest_pending_age_seconds:.0f}s"
            )
    breakers = await flow.breaker_store.states(now)
    open_breakers = sorted(b.key for b in breakers if b.state == OPEN)
    reasons.extend(f"breaker {key} is open" for key in open_breakers)
    recent: Window | None = None
    rollups = engine.reports.rollups
    if rollups is not None:
        window = await rollups.report(now - HEALTH_WINDOW_S, now, HEALTH_WINDOW_S, scope(request))
        recent = window.summary
        if window.summary.failure_rate > FAILING_RATE:
            reasons.append(f"{window.summary.failure_rate:.0%} of the tasks ended in 15 min failed")
    status = "unhealthy" if not health.ok else ("degraded" if reasons else "healthy")
    return json_response(TasksHealth(status, reasons, queues, open_breakers, recent))


async def run_recovery(request: web.Request) -> web.Response:
    if request[PRINCIPAL].owner != DEFAULT_TENANT:
        raise ApiError(
            403, "forbidden", "recovery is run by an admin of the platform or the default tenant"
        )
    return json_response(await recover_now(request.app[ENGINE]))


_METRICS = ((200, MetricsReport),)
ROUTES = [
    Route(
        "GET",
        "/api/v1/tasks/metrics",
        tasks_metrics,
        Permission.TASKS_READ,
        "Throughput, failure rate and latency percentiles over a time range, in buckets",
        answers=_METRICS,
        params=(
            Param("from_time", str, "ISO 8601 start (default: an hour before to_time)"),
            Param("to_time", str, "ISO 8601 end (default: now)"),
            Param("bucket_seconds", int, "bucket width, a multiple of 60 (default: ~60 buckets)"),
        ),
    ),
    Route(
        "GET",
        "/health/metrics",
        health_metrics,
        Permission.TASKS_READ,
        "Throughput, failure rate and latency percentiles over the last hours, in buckets",
        answers=_METRICS,
        params=(
            Param("hours", float, "the window, up to now (default 24)"),
            Param("bucket_seconds", int, "bucket width, a multiple of 60 (default: ~60 buckets)"),
        ),
    ),
    Route(
        "GET",
        "/api/v1/tasks/health",
        tasks_health,
        Permission.TASKS_READ,
        "Queue health: a verdict with its reasons, per-queue depths, open breakers",
        answers=((200, TasksHealth),),
    ),
    Route(
        "POST",
        "/health/recovery",
        run_recovery,
        Permission.FLOW_ADMIN,
        "Run the recovery passes now and report what they did",
        answers=((200, RecoveryRun),),
    ),
]

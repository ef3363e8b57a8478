"""``GET /metrics``: the Prometheus scrape (public, like the health probes)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tierq.api.permissions import Permission
from tierq.api.routes import ENGINE
from tierq.api.routing import Route, Text
from tierq.metrics import Metrics

METRICS = web.AppKey("metrics", Metrics)


async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    engine = request.app[ENGINE]
    # Depths of every tier, read at scrape time (O(1): maintained counters / set sizes).
    await engine.reports.update_gauges()
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


ROUTES = [
    Route(
        "GET",
        "/metrics",
        metrics_endpoint,
        Permission.PUBLIC,
        "Prometheus metrics",
        answers=((200, Text("text/plain", "Prometheus text exposition format")),),
    ),
]

"""The route table: every route of the API, each declared once in its module (``ROUTES``).
The router is built from it, the access middleware reads each route's permission from it,
and the tests walk it; nothing else registers a route."""

from __future__ import annotations

from aiohttp import web

from tierq.api import (
    audit,
    docs,
    external,
    flow,
    keys,
    operations,
    routes,
    schedules,
    scrape,
    stream,
    ui,
    webhooks,
)
from tierq.api.routing import Route

ROUTES: tuple[Route, ...] = (
    *routes.ROUTES,
    *external.ROUTES,
    *flow.ROUTES,
    *operations.ROUTES,
    *schedules.ROUTES,
    *stream.ROUTES,
    *webhooks.ROUTES,
    *keys.ROUTES,
    *audit.ROUTES,
    *scrape.ROUTES,
    *docs.ROUTES,
    *ui.ROUTES,
)


def by_method_and_path() -> dict[tuple[str, str], Route]:
    table = {(r.method, r.path): r for r in ROUTES}
    assert len(table) == len(ROUTES), "a route is declared twice"
    return table


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        # GET routes answer HEAD too only where declared; aiohttp's allow_head would add an
        # undeclared one.
        app.router.add_route(route.method, route.path, route.handler)

"""One route declared once: method, path, handler, the permission it needs, a summary, and
what it takes and answers (the msgspec types its handler decodes and encodes, its query
parameters and headers). The router, the access middleware, the route-permission test and the
OpenAPI document all read the same declarations (``api/table.py`` gathers them), so they
cannot drift apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tierq.api.permissions import Permission

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter (or, with ``header=True``, a request header) a route reads."""

    name: str
    type: Any = str
    description: str = ""
    required: bool = False
    header: bool = False


@dataclass(frozen=True, slots=True)
class Text:
    """An answer that is not JSON (the Prometheus scrape, the event stream, the docs page)."""

    media_type: str
    description: str


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    permission: Permission
    summary: str
    # The type the JSON body is decoded as (None: the route reads no body).
    body: Any = None
    body_required: bool = True
    # Success answers: status -> the type encoded (None: no body, as a 204), or Text.
    answers: tuple[tuple[int, Any], ...] = ((200, None),)
    params: tuple[Param, ...] = ()
    description: str = ""

    @property
    def mutating(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")

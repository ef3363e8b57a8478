"""One route declared once: method, path, handler, the permission it needs and a summary. The
router, the access middleware and the route-permission test all read the same declarations
(``api/table.py`` gathers them), so they cannot drift apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from tierq.api.permissions import Permission

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    permission: Permission
    summary: str

    @property
    def mutating(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")

"""The API's description: ``GET /api/v1/openapi.json`` (generated from the route table at
start-up, ``api/openapi.py``) and ``GET /docs``, a page that renders it, shipped in the
package (no CDN: it works offline)."""

from __future__ import annotations

from aiohttp import web

from tierq.api.permissions import Permission
from tierq.api.routing import Route, Text
from tierq.api.static import StaticFiles

OPENAPI = web.AppKey("openapi", bytes)
_ASSETS = ("docs.js", "docs.css")  # served under /docs/ (the page itself is /docs)
# The page runs only its own script and style files: no inline code, no other origin.
_STATIC = StaticFiles(
    "docs",
    {
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    },
)


async def openapi_json(request: web.Request) -> web.Response:
    response = web.Response(
        body=request.app[OPENAPI],
        content_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )
    response.enable_compression()
    return response


async def docs_page(request: web.Request) -> web.Response:
    return _STATIC.serve(request, "index.html")


async def docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in _ASSETS:
        raise web.HTTPNotFound()
    return _STATIC.serve(request, name)


ROUTES = [
    Route(
        "GET",
        "/api/v1/openapi.json",
        openapi_json,
        Permission.PUBLIC,
        "This API's OpenAPI 3.1 description",
        answers=((200, Text("application/json", "the OpenAPI 3.1 document")),),
    ),
    Route(
        "GET",
        "/docs",
        docs_page,
        Permission.PUBLIC,
        "The API's documentation page",
        answers=((200, Text("text/html", "renders openapi.json")), (304, None)),
    ),
    Route(
        "GET",
        "/docs/{asset}",
        docs_asset,
        Permission.PUBLIC,
        "The documentation page's script and style",
        answers=((200, Text("text/javascript", "or text/css")), (304, None)),
    ),
]

"""Files shipped in the package and served as they are (the dashboard, the docs page): read
once at import, each with an ETag, answered with the page's security headers, revalidated
on every use (no-cache: an upgrade is seen at once, an unchanged file is a 304), compressed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib.resources import files

from aiohttp import web

_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


class StaticFiles:
    def __init__(self, directory: str, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)
        # name -> (content, content type, ETag)
        self._files: dict[str, tuple[bytes, str, str]] = {}
        for item in files("tierq.api").joinpath("static", directory).iterdir():
            suffix = "." + item.name.rsplit(".", 1)[-1]
            if item.is_file() and suffix in _TYPES:
                body = item.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                self._files[item.name] = (body, _TYPES[suffix], etag)

    def serve(self, request: web.Request, name: str) -> web.Response:
        found = self._files.get(name)
        if found is None:
            raise web.HTTPNotFound()
        body, content_type, etag = found
        headers = {**self._headers, "Cache-Control": "no-cache", "ETag": etag}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        response = web.Response(body=body, content_type=content_type, headers=headers)
        response.enable_compression()
        return response

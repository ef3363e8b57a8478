"""The ``http`` task type: call a URL.

Payload: ``url`` (http/https), ``method`` (GET, POST, PUT, PATCH, DELETE, HEAD; default GET),
``headers`` (object of strings), ``body`` (a string is sent as text, anything else as JSON),
``timeout_seconds`` (number > 0; the whole call, redirects included), ``expect_status`` (list of
status codes that mean success; default any 2xx).

Result: ``{"status", "headers", "body", "truncated"}``; the body is kept up to 64 KiB and is
parsed JSON when the response says JSON and arrived whole, else text.

Failure classes: a 4xx (except 408 and 429) or a refused target is permanent (retrying cannot
help); 5xx, 408, 429, other unexpected statuses, timeouts and connection errors are retried.

Every hop (the first request and each redirect, at most 5, followed here rather than by aiohttp)
goes through ``NetGuard``: IP literals are checked before the request, names by the resolver.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from tierq import tracing
from tierq.config import Settings
from tierq.engine.handlers import payload as p
from tierq.engine.handlers.base import (
    PayloadError,
    PermanentError,
    TaskContext,
    TaskError,
    Unavailable,
)
from tierq.engine.handlers.netguard import NetGuard, TargetRefused, guarded_session

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
FIELDS = ("url", "method", "headers", "body", "timeout_seconds", "expect_status")
MAX_BODY = 64 * 1024
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_4XX = frozenset({408, 429})
# Credentials meant for one origin must not follow a redirect to another.
CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: URL
    method: str
    headers: CIMultiDict[str]
    data: bytes | None
    timeout: float | None
    expect: frozenset[int] | None  # None = any 2xx


def parse_http_url(raw: Any, path: str = "payload.url") -> URL:
    """An http/https URL naming a host (the http type's target, a webhook's URL), or a
    ``PayloadError`` at ``path``."""
    if not isinstance(raw, str) or not raw:
        raise PayloadError(path, "must be a non-empty string")
    try:
        url = URL(raw)
    except (ValueError, TypeError):
        raise PayloadError(path, "is not a valid URL") from None
    if url.scheme not in ("http", "https"):
        raise PayloadError(path, "must be an http:// or https:// URL")
    if not url.host:
        raise PayloadError(path, "must name a host")
    return url


def parse_request(payload: Any) -> HttpRequest:
    body = p.obj(payload, FIELDS)
    if "url" not in body:
        raise PayloadError("payload.url", "is required")
    url = parse_http_url(body["url"])
    method = body.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise PayloadError("payload.method", f"must be one of {', '.join(METHODS)}")
    method = method.upper()
    headers = CIMultiDict(p.str_map(body, "headers", key_forbid="\r\n: ", value_forbid="\r\n"))
    data: bytes | None = None
    content = body.get("body")
    if content is not None:
        if method == "HEAD":
            raise PayloadError("payload.body", "a HEAD request has no body")
        if isinstance(content, str):
            data = content.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = orjson.dumps(content)
            headers.setdefault("Content-Type", "application/json")
    expect: frozenset[int] | None = None
    if "expect_status" in body:
        codes = body["expect_status"]
        if not isinstance(codes, list) or not codes:
            raise PayloadError("payload.expect_status", "must be a non-empty list of integers")
        for i, code in enumerate(codes):
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise PayloadError(f"payload.expect_status[{i}]", "must be an integer 100..599")
        expect = frozenset(codes)
    timeout = p.positive_number(body, "timeout_seconds")
    return HttpRequest(url, method, headers, data, timeout, expect)


async def _read_capped(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY:
        chunk = await resp.content.read(MAX_BODY - size)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), bool(await resp.content.read(1))


def _decode(raw: bytes, truncated: bool, resp: aiohttp.ClientResponse) -> Any:
    ctype = resp.content_type
    if not truncated and raw and (ctype == "application/json" or ctype.endswith("+json")):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return raw.decode(resp.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def _headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in resp.headers.items():
        # str(): the names are multidict's istr, a subclass orjson refuses as a key.
        key = str(name)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


class HttpHandler:
    """One ``ClientSession`` per registry, created on first use inside the running loop (a
    session is loop-bound) and closed by ``close()`` on engine shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.guard = NetGuard(settings.http_allow_private)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        # A session from another (finished) loop cannot be used or closed here: replace it.
        if self._session is None or self._session.closed or self._loop is not loop:
            self._loop = loop
            self._session = guarded_session(self.guard)
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def validate(self, payload: Any) -> None:
        req = parse_request(payload)
        # Literal addresses can be refused at submit; names are checked when resolved.
        try:
            self.guard.check_host(req.url.host or "")
        except TargetRefused as exc:
            raise PayloadError("payload.url", str(exc)) from None

    async def run(self, ctx: TaskContext) -> Any:
        try:
            req = parse_request(ctx.payload)
        except PayloadError as exc:
            raise PermanentError(str(exc)) from None
        if ctx.request_id is not None and "X-Request-ID" not in req.headers:
            # The submitting request's id, so the target's logs can be joined with ours.
            req.headers["X-Request-ID"] = ctx.request_id
        tracing.inject(req.headers)  # the target's spans join this attempt's trace
        try:
            async with asyncio.timeout(req.timeout):
                return await self._call(req)
        except TimeoutError:
            raise Unavailable(f"http: {req.method} {req.url}: timed out") from None

    async def _call(self, req: HttpRequest) -> Any:
        session = self._get_session()
        url, method, data, headers = req.url, req.method, req.data, CIMultiDict(req.headers)
        for hop in range(MAX_REDIRECTS + 1):
            try:
                self.guard.check_host(url.host or "")
                async with session.request(
                    method, url, headers=headers, data=data, allow_redirects=False
                ) as resp:
                    status = resp.status
                    location = resp.headers.get("Location")
                    follow = status in REDIRECT_STATUSES and location is not None
                    if not follow or (req.expect is not None and status in req.expect):
                        return await self._finish(req, method, url, resp)
            except TargetRefused as exc:
                raise PermanentError(f"http: {exc}") from None
            except aiohttp.InvalidURL as exc:
                raise PermanentError(f"http: invalid URL {exc}") from None
            except aiohttp.ClientError as exc:
                raise Unavailable(f"http: {method} {url}: {type(exc).__name__}: {exc}") from None
            if hop == MAX_REDIRECTS:
                break
            assert location is not None
            try:
                target = url.join(URL(location))
            except ValueError:
                raise PermanentError(f"http: bad redirect Location {location!r}") from None
            if target.scheme not in ("http", "https") or not target.host:
                raise PermanentError(f"http: refused redirect to {location!r}")
            if status == 303 or (status in (301, 302) and method == "POST"):
                method = "HEAD" if method == "HEAD" else "GET"
                data = None
                headers.popall("Content-Type", None)
            if target.origin() != url.origin():
                for name in CREDENTIAL_HEADERS:
                    headers.popall(name, None)
            url = target
        raise PermanentError(f"http: more than {MAX_REDIRECTS} redirects, last to {url}")

    async def _finish(
        self, req: HttpRequest, method: str, url: URL, resp: aiohttp.ClientResponse
    ) -> dict[str, Any]:
        raw, truncated = (b"", False) if method == "HEAD" else await _read_capped(resp)
        status = resp.status
        result = {
            "status": status,
            "headers": _headers(resp),
            "body": _decode(raw, truncated, resp),
            "truncated": truncated,
        }
        ok = status in req.expect if req.expect is not None else 200 <= status < 300
        if ok:
            return result
        text = raw[:300].decode("utf-8", errors="replace")
        message = f"http: {method} {url}: unexpected status {status}: {text}"
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            raise PermanentError(message)
        if status >= 500 or status in RETRYABLE_4XX:
            raise Unavailable(message)
        raise TaskError(message)

"""Every error leaves as ``{"error": {"code", "message", "details"}}``.

Client mistakes map to 4xx with the field path in ``details``; an unavailable tier maps to 503
with Retry-After; anything unexpected maps to a 500 carrying only a request id. Tracebacks go to
the log, never into a response.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from tierq.api.schemas import encode
from tierq.engine.errors import (
    AlreadyExists,
    Conflict,
    FieldError,
    InvalidDependency,
    NotFound,
    ShuttingDown,
)
from tierq.storage.base import StoreDataError, StoreUnavailable

log = logging.getLogger("tierq.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Every response names the server without its version (aiohttp's default names Python's and
# its own): nothing to look vulnerabilities up by.
SERVER_NAME = "tierq"
REQUEST_ID = web.RequestKey("request_id", str)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = encode({"error": {"code": code, "message": message, "details": details or {}}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def field_details(path: str) -> dict[str, Any]:
    """``$[3].payload.url`` -> {"path": ..., "index": 3, "field": "payload.url"}."""
    details: dict[str, Any] = {"path": path}
    rest = path[1:] if path.startswith("$") else path
    if rest.startswith("["):
        end = rest.find("]")
        if end > 1 and rest[1:end].isdigit():
            details["index"] = int(rest[1:end])
            rest = rest[end + 1 :]
    if rest.startswith("."):
        rest = rest[1:]
    if rest:
        details["field"] = rest
    return details


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def to_response(exc: BaseException, request: web.Request) -> web.Response:
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, FieldError):
        return error_response(422, "validation_error", exc.message, field_details(exc.path))
    if isinstance(exc, msgspec.DecodeError):
        return error_response(400, "malformed_json", f"request body is not valid JSON: {exc}")
    if isinstance(exc, InvalidDependency):
        path = f"$[{exc.index}].depends_on[{exc.position}]"
        return error_response(422, "validation_error", str(exc), field_details(path))
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, AlreadyExists):
        return error_response(409, "conflict", str(exc), field_details(exc.path))
    if isinstance(exc, Conflict):
        return error_response(409, "conflict", str(exc), {"status": exc.state.value})
    if isinstance(exc, ShuttingDown):
        return error_response(503, "shutting_down", str(exc), headers={"Retry-After": "5"})
    if isinstance(exc, StoreDataError):
        # The database's own message stays in the log: it may describe storage internals.
        log.warning(
            "record store refused the data of request %s: %s", request.get(REQUEST_ID, "-"), exc
        )
        return error_response(422, "unstorable", "the record store refused a value of this request")
    if isinstance(exc, StoreUnavailable):
        return error_response(
            503, "unavailable", "storage is unavailable; retry later", headers={"Retry-After": "2"}
        )
    if isinstance(exc, web.HTTPException):
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else "request body too large"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, message, headers=headers)
    request_id = request.get(REQUEST_ID, "-")
    log.error(
        "unhandled error on %s %s [%s]", request.method, request.path, request_id, exc_info=exc
    )
    return error_response(500, "internal_error", "internal error", {"request_id": request_id})

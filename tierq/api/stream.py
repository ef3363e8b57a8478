"""``GET /api/v1/events``: the event log as a Server-Sent Events stream, or as JSON pages.

A stream starts at the live end, or after the cursor in ``Last-Event-ID`` / ``?after=``: it
first reads what follows that cursor from the log, then goes live on the process's one feed
(``engine/feed.py``). Every event is sent with its cursor as ``id:``, its type as ``event:``
and its JSON as ``data:``; a comment line every ``KEEPALIVE_S`` keeps proxies from closing an
idle stream.

What must stay true: a client resuming from a cursor gets every event after it once, in log
order (the live buffer is filled from before the catch-up starts; what the catch-up already
sent is skipped by cursor); a cursor older than the log keeps gets ``event: reset`` naming the
oldest cursor kept, never a silent gap; a client slower than the stream is disconnected once
its buffer is full (``event_client_buffer``), and resumes from its last cursor. A log that
is down refuses a new stream with 503 (before any header); a stream that meets it later ends
with ``event: error``; one open while the log lost its data is ended by the feed. Each
stream starts with ``retry: 2000`` (how long a browser waits to reconnect).
"""

from __future__ import annotations

import contextlib
import logging

import orjson
from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from tierq.api.auth.access import PRINCIPAL
from tierq.api.errors import REQUEST_ID, SERVER_NAME, ApiError
from tierq.api.permissions import Permission
from tierq.api.routes import ENGINE, json_response
from tierq.api.routing import Param, Route, Text
from tierq.api.schemas import encode, event_out
from tierq.api.shapes import EventPage, EventReset
from tierq.engine.feed import Listener
from tierq.ids import is_valid_id
from tierq.model import Event, EventFilter, EventType
from tierq.storage.base import StoreUnavailable
from tierq.storage.eventlog import BadCursor, EventLog, cursor_value

logger = logging.getLogger("tierq.api")
KEEPALIVE_S = 15.0
# How long a browser's EventSource waits before it reconnects (sent first on every stream).
RETRY = b"retry: 2000\n"
CATCH_UP_PAGE = 1000
DEFAULT_PAGE = 100
MAX_PAGE = 1000
_EVENT_NAMES = frozenset(e.value for e in EventType)
_WRITE_GONE = (ConnectionResetError, ClientConnectionResetError)


def _bad(parameter: str, message: str) -> ApiError:
    return ApiError(400, "bad_parameter", message, {"parameter": parameter})


def parse_event_filter(request: web.Request) -> EventFilter | None:
    query = request.query
    task_id = query.get("task_id") or None
    if task_id is not None:
        task_id = task_id.lower()
        if not is_valid_id(task_id):
            raise _bad("task_id", "task_id must be a task id")
    events: frozenset[str] | None = None
    if query.get("event"):
        names = frozenset(n.strip().lower() for n in query["event"].split(",") if n.strip())
        unknown = sorted(names - _EVENT_NAMES)
        if unknown or not names:
            allowed = ", ".join(sorted(_EVENT_NAMES))
            raise _bad("event", f"event must be a comma list among: {allowed}")
        events = names
    queue = query.get("queue") or None
    type_name = query.get("type") or None
    # A tenant's caller hears its own tenant's events only.
    tenant = request[PRINCIPAL].scope
    if (task_id, events, queue, type_name, tenant) == (None, None, None, None, None):
        return None
    return EventFilter(task_id=task_id, queue=queue, type=type_name, events=events, tenant=tenant)


def _event_log(request: web.Request) -> EventLog:
    log = request.app[ENGINE].feed.log
    if log is None:
        raise ApiError(
            404, "event_log_off", "the event log is off on this server (TIERQ_EVENT_LOG=false)"
        )
    return log


def _cursor(request: web.Request, *, header: bool) -> str | None:
    raw = request.query.get("after") or None
    parameter = "after"
    if raw is None and header:
        raw = request.headers.get("Last-Event-ID") or None
        parameter = "Last-Event-ID"
    if raw is None:
        return None
    try:
        cursor_value(raw.strip())
    except BadCursor:
        raise _bad(parameter, f"{parameter} must be an event cursor") from None
    return raw.strip()


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


async def events(request: web.Request) -> web.StreamResponse:
    log = _event_log(request)
    flt = parse_event_filter(request)
    if _wants_json(request):
        return await _page(request, log, flt)
    return await _stream(request, log, flt)


MAX_LAST = 100_000


async def _page(request: web.Request, log: EventLog, flt: EventFilter | None) -> web.Response:
    cursor = _cursor(request, header=False)
    raw_last = request.query.get("last")
    if raw_last:
        # The newest N events instead of the oldest kept (a task page on a long log).
        if not (raw_last.isascii() and raw_last.isdigit()) or not 1 <= int(raw_last) <= MAX_LAST:
            raise _bad("last", f"last must be an integer from 1 to {MAX_LAST}")
        if cursor is not None:
            raise _bad("last", "give after or last, not both")
        cursor = str(max(0, await log.end() - int(raw_last)))
    raw_limit = request.query.get("limit") or str(DEFAULT_PAGE)
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise _bad("limit", f"limit must be an integer from 1 to {MAX_PAGE}")
    page = await log.read_after(cursor, int(raw_limit), flt)
    reset = None if page.reset is None else EventReset(page.reset)
    return json_response(EventPage([event_out(e) for e in page.events], page.next_cursor, reset))


def _frame(event: Event) -> bytes:
    data = encode(event_out(event))
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event.cursor.encode(), event.event.encode(), data)


class _Stream:
    """One client's stream: what was sent last, and the writes."""

    def __init__(self, response: web.StreamResponse, last: int) -> None:
        self.response = response
        self.last = last

    async def send(self, events: list[Event]) -> None:
        frames = [_frame(e) for e in events if int(e.cursor) > self.last]
        if frames:
            await self.response.write(b"".join(frames))
            self.last = max(self.last, int(events[-1].cursor))

    async def reset(self, oldest: str) -> None:
        # The id lets a client that reconnects now resume at the oldest event kept.
        resume = max(0, int(oldest) - 1)
        data = orjson.dumps({"oldest_cursor": oldest})
        await self.response.write(b"id: %d\nevent: reset\ndata: %s\n\n" % (resume, data))
        self.last = resume


async def _catch_up(stream: _Stream, log: EventLog, flt: EventFilter | None) -> None:
    """Send what the log holds after ``stream.last``, until a read finds nothing new."""
    while True:
        page = await log.read_after(str(stream.last), CATCH_UP_PAGE, flt)
        if page.reset is not None:
            await stream.reset(page.reset)
        await stream.send(page.events)
        moved = int(page.next_cursor)
        if not page.events and moved <= stream.last:
            return
        stream.last = max(stream.last, moved)


async def _stream(
    request: web.Request, log: EventLog, flt: EventFilter | None
) -> web.StreamResponse:
    cursor = _cursor(request, header=True)
    feed = request.app[ENGINE].feed
    # Listening before anything is read: whatever the catch-up misses, the buffer has.
    listener = await feed.listen(flt)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
                "X-Request-ID": request.get(REQUEST_ID, ""),
                "Server": SERVER_NAME,
            }
        )
        await response.prepare(request)
        start = int(cursor) if cursor is not None else (feed.position or 0)
        stream = _Stream(response, start)
        try:
            await response.write(RETRY + b": connected\n\n")
            if cursor is not None:
                await _catch_up_until_live(stream, log, flt, listener)
            await _live(stream, listener, request)
        except _WRITE_GONE:
            pass  # the client left
        except StoreUnavailable as exc:
            # The headers are sent: an HTTP error cannot follow. The stream ends with an
            # error event; the client reconnects (after ``retry``) from its cursor.
            logger.warning("event stream ended: the event log is unavailable: %s", exc)
            with contextlib.suppress(*_WRITE_GONE):
                await response.write(b'event: error\ndata: {"error": "event log unavailable"}\n\n')
        return response
    finally:
        feed.unlisten(listener)


async def _catch_up_until_live(
    stream: _Stream, log: EventLog, flt: EventFilter | None, listener: Listener
) -> None:
    # A buffer that overflowed while the log was read lost live events the log still has.
    while True:
        await _catch_up(stream, log, flt)
        if not listener.overflowed:
            return
        listener.buffer.clear()
        listener.overflowed = False


async def _live(stream: _Stream, listener: Listener, request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        # Past its buffer the client is dropped even while a write to it is blocked.
        listener.on_overflow = transport.abort
    if listener.overflowed:
        return
    while not listener.closed:
        events = await listener.take(KEEPALIVE_S)
        if listener.overflowed:
            return  # too slow: disconnected, it resumes from its cursor
        if events:
            await stream.send(events)
        elif not listener.closed:
            await stream.response.write(b": keep-alive\n\n")


ROUTES = [
    Route(
        "GET",
        "/api/v1/events",
        events,
        Permission.EVENTS_READ,
        "Task events: a resumable Server-Sent Events stream, or JSON pages",
        answers=(
            (200, EventPage),
            (200, Text("text/event-stream", "one frame per event: id (cursor), event, data")),
        ),
        params=(
            Param("task_id", str, "one task's events"),
            Param("event", str, "comma list of event names"),
            Param("queue", str, "one queue's events"),
            Param("type", str, "one task type's events"),
            Param("after", str, "resume after this cursor"),
            Param("limit", int, f"JSON pages: 1 to {MAX_PAGE} (default {DEFAULT_PAGE})"),
            Param("last", int, f"JSON pages: start {MAX_LAST:,} events or fewer before the newest"),
            Param("Last-Event-ID", str, "the stream resumes after it", header=True),
        ),
        description="JSON pages when Accept names application/json (and not the stream).",
    ),
]

__all__ = ["ROUTES", "parse_event_filter"]

"""Real receivers for notification tests: an HTTP server that records webhook requests and
answers as a test scripts it, and an SMTP server (aiosmtpd) that keeps every message.

Both listen on 127.0.0.1 on a free port; tests point tierq at them (allowing loopback with
``http_allow_private``, since the SSRF guard refuses it by default).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller

from tests.system.cluster import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class WebhookReceiver:
    """Answers each request with the next scripted ``Answer`` (then ``default``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Received] = []
        self.script: deque[Answer] = deque()
        self.default = Answer()
        self._runner: web.AppRunner | None = None
        self._arrived: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(request.path, dict(request.headers), body, time.time()))
        if self._arrived is not None:
            self._arrived.set()
        answer = self.script.popleft() if self.script else self.default
        return web.Response(status=answer.status, headers=answer.headers, text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(
        self, count: int, timeout: float = 10.0, path: str | None = None
    ) -> list[Received]:
        """Until ``count`` requests (to ``path``, if given) have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            got = [r for r in self.requests if path is None or r.path == path]
            if len(got) >= count:
                return got
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(got)} of {count} requests arrived"
            self._arrived = asyncio.Event()
            try:
                async with asyncio.timeout(min(remaining, 0.2)):
                    await self._arrived.wait()
            except TimeoutError:
                pass


class _Keep:
    def __init__(self, inbox: list[EmailMessage]) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.inbox.append(message)  # type: ignore[arg-type]
        return "250 OK"


class SmtpReceiver:
    """A real SMTP server (aiosmtpd, in its own thread) keeping every message it accepts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox: list[EmailMessage] = []
        self._controller = Controller(_Keep(self.inbox), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.inbox) < count:
            assert time.monotonic() < deadline, f"{len(self.inbox)} of {count} messages arrived"
            await asyncio.sleep(0.02)
        return self.inbox


class ProbeServer:
    """A real HTTP service for ``http`` tasks that records, outside tierq, every call it got:
    when, and how many were in progress at once. ``down`` makes it answer 503; ``delay_s``
    makes each call take that long."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.down = False
        self.calls: list[tuple[float, bool]] = []  # (time, answered while down)
        self.request_ids: list[str | None] = []  # the X-Request-ID of each call
        self.running = 0
        self.max_running = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls.append((time.time(), self.down))
        self.request_ids.append(request.headers.get("X-Request-ID"))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return web.Response(status=503 if self.down else 200, text="probe")
        finally:
            self.running -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/probe"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

"""Email over SMTP (aiosmtplib): the ``tierq.email`` delivery type, and the built-in ``email``
task type (seed 003's example task) on the same client.

``TIERQ_SMTP_TLS``: ``off`` (plain, no STARTTLS even if offered), ``starttls`` (upgrade, or
fail), ``tls`` (implicit TLS from the first byte). A 5xx answer is permanent (retrying cannot
help); 4xx answers, timeouts and connection errors are retried: deliveries with backoff until
the retry horizon, ``email`` tasks by their own retry policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from tierq.config import Settings
from tierq.engine.errors import FieldError
from tierq.engine.handlers import payload as p
from tierq.engine.handlers.base import (
    PayloadError,
    PermanentError,
    RetryLater,
    TaskContext,
    TaskError,
)
from tierq.engine.instruments import EngineMetrics
from tierq.engine.notify.backoff import next_delay
from tierq.engine.notify.messages import attempt_error
from tierq.engine.notify.targets import MAX_RECIPIENTS, check_address

CHANNEL = "email"
TASK_FIELDS = ("to", "subject", "text", "body")
MAX_SUBJECT = 500
MAX_TEXT = 200_000


class SmtpFailed(Exception):
    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class EmailSender:
    def __init__(
        self, settings: Settings, instruments: EngineMetrics, clock: Callable[[], float]
    ) -> None:
        self._settings = settings
        self._instruments = instruments
        self._clock = clock

    async def send(self, to: list[str], subject: str, text: str) -> float:
        """Send one message; return how long it took. Raises ``SmtpFailed``."""
        s = self._settings
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=s.smtp_from.rsplit("@", 1)[-1] or "tierq")
        message.set_content(text)
        started = time.perf_counter()
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user or None,
                password=s.smtp_password or None,
                use_tls=s.smtp_tls == "tls",
                start_tls=s.smtp_tls == "starttls",
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise SmtpFailed(f"recipients refused: {exc}", all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SmtpFailed(f"SMTP {exc.code}: {exc.message}", exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SmtpFailed(f"{type(exc).__name__}: {exc}", False) from None
        return time.perf_counter() - started

    async def run_delivery(self, ctx: TaskContext) -> dict[str, Any]:
        """A ``tierq.email`` delivery (made by the notifier)."""
        payload = ctx.payload
        s = self._settings
        age = self._clock() - float(payload["created_at"])
        if age > s.notify_retry_horizon_s:
            self._instruments.notification(CHANNEL, "gave_up", None)
            raise PermanentError(f"email: given up after {s.notify_retry_horizon_s:g} s")
        started = time.perf_counter()
        try:
            seconds = await self.send(payload["to"], payload["subject"], payload["text"])
        except SmtpFailed as exc:
            seconds = time.perf_counter() - started
            ms = round(seconds * 1000)
            if exc.permanent:
                self._instruments.notification(CHANNEL, "refused", seconds)
                raise PermanentError(attempt_error(str(exc), ms)) from None
            self._instruments.notification(CHANNEL, "failed", seconds)
            delay = next_delay(ctx.attempt, s.notify_retry_base_s, s.notify_retry_max_s)
            delay = min(delay, max(0.0, s.notify_retry_horizon_s - age) + 1.0)
            raise RetryLater(attempt_error(str(exc), ms), delay, unavailable=True) from None
        self._instruments.notification(CHANNEL, "delivered", seconds)
        return {"latency_ms": round(seconds * 1000), "to": payload["to"]}

    # ---- the ``email`` task type -----------------------------------------------------------

    def validate(self, payload: Any) -> None:
        body = p.obj(payload, TASK_FIELDS)
        to = body.get("to")
        recipients = [to] if isinstance(to, str) else to
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise PayloadError(
                "payload.to", f"must be an address or a list of 1 to {MAX_RECIPIENTS}"
            )
        for i, address in enumerate(recipients):
            path = "payload.to" if isinstance(to, str) else f"payload.to[{i}]"
            if not isinstance(address, str):
                raise PayloadError(path, "must be an email address")
            try:
                check_address(address, path)
            except FieldError as exc:
                raise PayloadError(path, exc.message) from None
        subject = body.get("subject")
        if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT:
            raise PayloadError(
                "payload.subject", f"must be a string of 1 to {MAX_SUBJECT} characters"
            )
        if "\r" in subject or "\n" in subject:
            raise PayloadError("payload.subject", "must be one line")
        if "text" in body and "body" in body:
            raise PayloadError("payload.body", "give text or body, not both")
        text = body.get("text", body.get("body", ""))
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise PayloadError("payload.text", f"must be a string of at most {MAX_TEXT} characters")

    async def run_task(self, ctx: TaskContext) -> dict[str, Any]:
        try:
            self.validate(ctx.payload)
        except PayloadError as exc:
            raise PermanentError(str(exc)) from None
        body = ctx.payload
        to = body["to"] if isinstance(body["to"], list) else [body["to"]]
        try:
            seconds = await self.send(to, body["subject"], body.get("text", body.get("body", "")))
        except SmtpFailed as exc:
            if exc.permanent:
                raise PermanentError(f"email: {exc}") from None
            raise TaskError(f"email: {exc}") from None
        return {"sent_to": to, "latency_ms": round(seconds * 1000)}

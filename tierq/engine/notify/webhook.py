"""The ``tierq.webhook`` delivery type: one signed POST per attempt, Standard Webhooks style.

Headers ``webhook-id`` (the same on every attempt of one delivery, so a receiver can drop
repeats), ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` of
``id.timestamp.body``, one per signing key during a rotation, space-separated), signed by the
``standardwebhooks`` library, afresh on every attempt.

Outcomes: 2xx delivered; 410 Gone ends the delivery (and disables its subscription); anything
else (3xx included: redirects are never followed), timeouts and connection errors are retried
with backoff, honouring ``Retry-After`` on 429/502/503/504, until the retry horizon, where the
delivery is given up and its subscription disabled. The URL goes through the SSRF guard on
every attempt (literal addresses here, names in the resolver: DNS rebinding cannot pass).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook
from yarl import URL

from tierq import tracing
from tierq.config import Settings
from tierq.engine.handlers.base import PermanentError, RetryLater, TaskContext
from tierq.engine.handlers.netguard import NetGuard, TargetRefused, guarded_session
from tierq.engine.instruments import EngineMetrics
from tierq.engine.notify.backoff import next_delay, retry_after
from tierq.engine.notify.messages import attempt_error
from tierq.engine.notify.subscriptions import SubscriptionCache

CHANNEL = "webhook"
HONOUR_RETRY_AFTER = frozenset({429, 502, 503, 504})
MAX_ANSWER_BYTES = 1024
# Called when a subscription must be disabled: (subscription id, reason).
Disable = Callable[[str, str], Awaitable[None]]


class WebhookSender:
    def __init__(
        self,
        settings: Settings,
        subscriptions: SubscriptionCache,
        disable: Disable,
        instruments: EngineMetrics,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._disable = disable
        self._instruments = instruments
        self._clock = clock
        self.guard = NetGuard(settings.http_allow_private)
        self._session: aiohttp.ClientSession | None = None
        self._signers = {key: Webhook(key) for key in settings.webhook_secret}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = guarded_session(self.guard)
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def _keys(self, sub_id: str | None) -> list[Webhook]:
        if sub_id is None:
            if not self._signers:
                raise PermanentError(
                    "webhook: this server has no signing key (TIERQ_WEBHOOK_SECRET)"
                )
            return list(self._signers.values())
        sub = await self._subscriptions.lookup(sub_id)
        if sub is None:
            raise PermanentError(f"webhook: subscription {sub_id} was deleted")
        if not sub.enabled:
            raise PermanentError(f"webhook: subscription {sub_id} is disabled")
        return [Webhook(sub.secret)]

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        payload = ctx.payload
        sub_id: str | None = payload.get("subscription_id")
        settings = self._settings
        age = self._clock() - float(payload["created_at"])
        if age > settings.notify_retry_horizon_s:
            self._instruments.notification(CHANNEL, "gave_up", None)
            reason = f"deliveries failed for longer than {settings.notify_retry_horizon_s:g} s"
            if sub_id is not None:
                await self._disable(sub_id, reason)
            raise PermanentError(f"webhook: given up: {reason}")
        keys = await self._keys(sub_id)
        msg_id, body = payload["msg_id"], payload["body"].encode()
        stamp = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tierq-webhooks",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": " ".join(k.sign(msg_id, stamp, body) for k in keys),
        }
        if ctx.request_id is not None:  # the request that submitted the task it is about
            headers["X-Request-ID"] = ctx.request_id
        tracing.inject(headers)
        url = URL(payload["url"])
        started = time.perf_counter()
        status: int | None = None
        wait: float | None = None
        try:
            self.guard.check_host(url.host or "")
            async with asyncio.timeout(settings.webhook_timeout_s):
                async with self._http().post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    status = resp.status
                    wait = retry_after(resp.headers.get("Retry-After"))
                    await resp.content.read(MAX_ANSWER_BYTES)
        except TargetRefused as exc:
            self._instruments.notification(CHANNEL, "refused", None)
            raise PermanentError(f"webhook: {exc}") from None
        except TimeoutError:
            what = "timed out"
        except aiohttp.ClientError as exc:
            what = f"connection failed: {type(exc).__name__}: {exc}"
        else:
            what = "delivered" if 200 <= status < 300 else "not accepted"
        seconds = time.perf_counter() - started
        ms = round(seconds * 1000)
        if status is not None and 200 <= status < 300:
            self._instruments.notification(CHANNEL, "delivered", seconds)
            return {"status": status, "latency_ms": ms}
        if status == 410:
            self._instruments.notification(CHANNEL, "gone", seconds)
            if sub_id is not None:
                await self._disable(sub_id, "the receiver answered 410 Gone")
            raise PermanentError(attempt_error("gone: no more deliveries", ms, status))
        self._instruments.notification(CHANNEL, "failed", seconds)
        delay = next_delay(ctx.attempt, settings.notify_retry_base_s, settings.notify_retry_max_s)
        if status in HONOUR_RETRY_AFTER and wait is not None:
            delay = wait
        delay = min(delay, max(0.0, settings.notify_retry_horizon_s - age) + 1.0)
        # No answer, a 5xx, 408 or 429: the receiver is unavailable (its breaker counts it).
        unavailable = status is None or status >= 500 or status in (408, 429)
        raise RetryLater(attempt_error(what, ms, status), delay, unavailable)

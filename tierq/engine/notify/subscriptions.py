"""Webhook subscriptions: created, listed, enabled and deleted through the API, and read by
every replica's notifier from a cache (subscriptions change rarely; events are many).

What must stay true: a change made on this replica is seen here at once (the cache is dropped);
one made on another replica within ``TTL_S``; a notifier never waits on the store for longer
than one read per ``TTL_S``; a failed read keeps the last list (and is retried next time).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Callable
from typing import Annotated

import msgspec

from tierq.config import Settings
from tierq.engine.errors import NotFound
from tierq.engine.notify.targets import (
    SUBSCRIPTION_EVENTS,
    Events,
    check_events,
    check_url,
    guard_for,
)
from tierq.ids import is_valid_id, new_id
from tierq.model import DEFAULT_TENANT, WebhookSubscription
from tierq.storage.notifications import NotificationStore

log = logging.getLogger("tierq.notify")
TTL_S = 5.0
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    events: Events | None = None
    queue: Name | None = None
    type: Name | None = None
    enabled: bool = True
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None


def new_secret() -> str:
    """A signing key in the Standard Webhooks form: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class SubscriptionCache:
    def __init__(
        self, store: NotificationStore, clock: Callable[[], float], ttl_s: float = TTL_S
    ) -> None:
        self._store = store
        self._clock = clock
        self.ttl_s = ttl_s
        self._subs: list[WebhookSubscription] = []
        self._by_id: dict[str, WebhookSubscription] = {}
        self._read_at = float("-inf")
        self._lock: asyncio.Lock | None = None

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    async def current(self) -> list[WebhookSubscription]:
        if self._clock() - self._read_at >= self.ttl_s:
            await self._reload()
        return self._subs

    async def lookup(self, sub_id: str) -> WebhookSubscription | None:
        """One subscription; read again when unknown here (created on another replica)."""
        sub = self._by_id.get(sub_id)
        if sub is None or self._clock() - self._read_at >= self.ttl_s:
            await self._reload(force=True)
            sub = self._by_id.get(sub_id)
        return sub

    async def _reload(self, force: bool = False) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not force and self._clock() - self._read_at < self.ttl_s:
                return  # another caller read it meanwhile
            try:
                subs = await self._store.webhook_list()
            except Exception as exc:
                log.warning("webhook subscriptions: read failed (%s); using the last list", exc)
                self._read_at = self._clock()
                return
            self._subs = subs
            self._by_id = {s.id: s for s in subs}
            self._read_at = self._clock()


class Subscriptions:
    """The API's view: validation (field paths), creation with a fresh secret, changes."""

    def __init__(
        self,
        store: NotificationStore,
        cache: SubscriptionCache,
        settings: Settings,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._cache = cache
        self._settings = settings
        self._clock = clock

    async def create(
        self, spec: SubscriptionIn, tenant: str = DEFAULT_TENANT
    ) -> WebhookSubscription:
        guard = guard_for(self._settings.http_allow_private)
        url = check_url(spec.url, "$.url", guard)
        events = check_events(spec.events, "$.events", SUBSCRIPTION_EVENTS)
        now = self._clock()
        sub = WebhookSubscription(
            new_id(now),
            url,
            new_secret(),
            events,
            spec.queue,
            spec.type,
            spec.enabled,
            now,
            now,
            spec.description,
            tenant=tenant,
        )
        await self._store.webhook_insert(sub)
        self._cache.invalidate()
        return sub

    async def list(self, tenant: str | None = None) -> list[WebhookSubscription]:
        return await self._store.webhook_list(tenant)

    async def get(self, sub_id: str, tenant: str | None = None) -> WebhookSubscription:
        """The subscription, if it is ``tenant``'s (None: any tenant's)."""
        sub = await self._store.webhook_get(sub_id, tenant) if is_valid_id(sub_id) else None
        if sub is None:
            raise NotFound(f"no webhook subscription {sub_id}")
        return sub

    async def set_enabled(
        self,
        sub_id: str,
        enabled: bool,
        reason: str | None = None,
        tenant: str | None = None,
    ) -> WebhookSubscription:
        if tenant is not None:
            await self.get(sub_id, tenant)
        sub = None
        if is_valid_id(sub_id):
            sub = await self._store.webhook_set_enabled(
                sub_id, enabled, reason or "disabled by hand", self._clock()
            )
        if sub is None:
            raise NotFound(f"no webhook subscription {sub_id}")
        self._cache.invalidate()
        return sub

    async def delete(self, sub_id: str, tenant: str | None = None) -> None:
        if tenant is not None:
            await self.get(sub_id, tenant)
        if not is_valid_id(sub_id) or not await self._store.webhook_delete(sub_id):
            raise NotFound(f"no webhook subscription {sub_id}")
        self._cache.invalidate()

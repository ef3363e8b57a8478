"""Notification records: webhook subscriptions, and the index from a task to the deliveries
made about it. Kept in the record store's database (the SQLite file, or PostgreSQL), through
the record store's own connections; the deliveries themselves are tasks in the record store.

Public methods check arguments and skip empty batches; backends fill the primitives. Each
write is one statement.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from tierq.model import Delivery, WebhookSubscription


class NotificationStore(abc.ABC):
    async def webhook_insert(self, sub: WebhookSubscription) -> None:
        await self._webhook_insert(sub)

    async def webhook_list(self, tenant: str | None = None) -> list[WebhookSubscription]:
        """The subscriptions of ``tenant`` (None: every tenant), oldest first."""
        return await self._webhook_list(tenant)

    async def webhook_get(
        self, sub_id: str, tenant: str | None = None
    ) -> WebhookSubscription | None:
        return await self._webhook_get(sub_id, tenant)

    async def webhook_set_enabled(
        self, sub_id: str, enabled: bool, reason: str | None, now: float
    ) -> WebhookSubscription | None:
        """Enable or disable (saying why); None when there is no such subscription."""
        return await self._webhook_set_enabled(sub_id, enabled, None if enabled else reason, now)

    async def webhook_delete(self, sub_id: str) -> bool:
        return await self._webhook_delete(sub_id)

    async def deliveries_add_many(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._deliveries_add_many(deliveries)

    async def deliveries_forget(self, task_ids: Sequence[str]) -> None:
        """Drop the delivery index of tasks that are gone (retention)."""
        if task_ids:
            await self._deliveries_forget(task_ids)

    async def deliveries_of(self, task_id: str) -> list[Delivery]:
        """The deliveries made about one task, oldest first."""
        return await self._deliveries_of(task_id)

    # ---- primitives --------------------------------------------------------------------

    @abc.abstractmethod
    async def _webhook_insert(self, sub: WebhookSubscription) -> None: ...

    @abc.abstractmethod
    async def _webhook_list(self, tenant: str | None) -> list[WebhookSubscription]: ...

    @abc.abstractmethod
    async def _webhook_get(self, sub_id: str, tenant: str | None) -> WebhookSubscription | None: ...

    @abc.abstractmethod
    async def _webhook_set_enabled(
        self, sub_id: str, enabled: bool, reason: str | None, now: float
    ) -> WebhookSubscription | None: ...

    @abc.abstractmethod
    async def _webhook_delete(self, sub_id: str) -> bool: ...

    @abc.abstractmethod
    async def _deliveries_add_many(self, deliveries: Sequence[Delivery]) -> None: ...

    @abc.abstractmethod
    async def _deliveries_of(self, task_id: str) -> list[Delivery]: ...

    @abc.abstractmethod
    async def _deliveries_forget(self, task_ids: Sequence[str]) -> None: ...

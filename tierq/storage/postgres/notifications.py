"""Notification records in PostgreSQL, on the record store's connection pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tierq.model import Delivery, WebhookSubscription
from tierq.storage.notifications import NotificationStore
from tierq.storage.postgres.queries import sql
from tierq.storage.postgres.store import PostgresRecordStore

_INSERT = sql("notifications_webhook_insert")
_LIST = sql("notifications_webhook_list")
_GET = sql("notifications_webhook_get")
_SET_ENABLED = sql("notifications_webhook_set_enabled")
_DELETE = sql("notifications_webhook_delete")
_DELIVERIES_ADD = sql("notifications_deliveries_add")
_DELIVERIES_OF = sql("notifications_deliveries_of")
_DELIVERIES_FORGET = sql("notifications_deliveries_forget")


def _subscription(row: Any) -> WebhookSubscription:
    return WebhookSubscription(
        row[0],
        row[1],
        row[2],
        tuple(row[3]),
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
    )


class PostgresNotificationStore(NotificationStore):
    def __init__(self, record: PostgresRecordStore) -> None:
        self._record = record

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        async with self._record._acquire() as conn:
            return await getattr(conn, method)(sql, *args)

    async def _webhook_insert(self, sub: WebhookSubscription) -> None:
        await self._run(
            "execute",
            _INSERT,
            sub.id,
            sub.url,
            sub.secret,
            list(sub.events),
            sub.queue,
            sub.type,
            sub.enabled,
            sub.created_at,
            sub.updated_at,
            sub.description,
            sub.disabled_reason,
            sub.tenant,
        )

    async def _webhook_list(self, tenant: str | None) -> list[WebhookSubscription]:
        return [_subscription(r) for r in await self._run("fetch", _LIST, tenant)]

    async def _webhook_get(self, sub_id: str, tenant: str | None) -> WebhookSubscription | None:
        row = await self._run("fetchrow", _GET, sub_id, tenant)
        return None if row is None else _subscription(row)

    async def _webhook_set_enabled(
        self, sub_id: str, enabled: bool, reason: str | None, now: float
    ) -> WebhookSubscription | None:
        row = await self._run("fetchrow", _SET_ENABLED, sub_id, enabled, reason, now)
        return None if row is None else _subscription(row)

    async def _webhook_delete(self, sub_id: str) -> bool:
        status: str = await self._run("execute", _DELETE, sub_id)
        return status.endswith(" 1")

    async def _deliveries_add_many(self, deliveries: Sequence[Delivery]) -> None:
        await self._run(
            "execute",
            _DELIVERIES_ADD,
            [d.delivery_id for d in deliveries],
            [d.task_id for d in deliveries],
            [d.channel for d in deliveries],
            [d.target for d in deliveries],
            [d.event for d in deliveries],
            [d.created_at for d in deliveries],
            [d.subscription_id for d in deliveries],
        )

    async def _deliveries_forget(self, task_ids: Sequence[str]) -> None:
        await self._run("execute", _DELIVERIES_FORGET, list(task_ids))

    async def _deliveries_of(self, task_id: str) -> list[Delivery]:
        return [Delivery(*r) for r in await self._run("fetch", _DELIVERIES_OF, task_id)]

"""One suite for both notification stores (SQLite file, PostgreSQL schema): subscriptions and
the delivery index, on the record store's own connections."""

from __future__ import annotations

from tierq.ids import new_id
from tierq.model import Delivery, WebhookSubscription
from tierq.storage.base import RecordStore
from tierq.storage.factory import make_notification_store

NOW = 1_700_000_000.0


def subscription(**changes: object) -> WebhookSubscription:
    values: dict[str, object] = dict(
        id=new_id(NOW),
        url="https://hooks.example.com/in",
        secret="whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
        events=("failed", "cancelled"),
        queue="emails",
        type=None,
        enabled=True,
        created_at=NOW,
        updated_at=NOW,
        description="ops",
    )
    values.update(changes)
    return WebhookSubscription(**values)  # type: ignore[arg-type]


async def test_subscriptions_round_trip(record_store: RecordStore) -> None:
    store = make_notification_store(record_store)
    first, second = subscription(), subscription(created_at=NOW + 1, queue=None, type="resize")
    await store.webhook_insert(second)
    await store.webhook_insert(first)
    assert await store.webhook_list() == [first, second]  # oldest first
    assert await store.webhook_get(first.id) == first
    assert await store.webhook_get(new_id(NOW)) is None


async def test_disable_with_a_reason_and_enable_again(record_store: RecordStore) -> None:
    store = make_notification_store(record_store)
    sub = subscription()
    await store.webhook_insert(sub)
    off = await store.webhook_set_enabled(sub.id, False, "410 Gone", NOW + 5)
    assert off is not None and not off.enabled
    assert (off.disabled_reason, off.updated_at) == ("410 Gone", NOW + 5)
    on = await store.webhook_set_enabled(sub.id, True, "ignored when enabling", NOW + 6)
    assert on is not None and on.enabled and on.disabled_reason is None
    assert await store.webhook_set_enabled(new_id(NOW), False, "x", NOW) is None


async def test_delete(record_store: RecordStore) -> None:
    store = make_notification_store(record_store)
    sub = subscription()
    await store.webhook_insert(sub)
    assert await store.webhook_delete(sub.id) is True
    assert await store.webhook_delete(sub.id) is False
    assert await store.webhook_list() == []


async def test_deliveries_are_indexed_by_task_in_one_batch(record_store: RecordStore) -> None:
    store = make_notification_store(record_store)
    task_a, task_b, sub_id = new_id(NOW), new_id(NOW), new_id(NOW)
    rows = [
        Delivery(new_id(NOW), task_a, "webhook", "https://x.example/h", "succeeded", NOW, sub_id),
        Delivery(new_id(NOW), task_b, "email", "a@example.com, b@example.com", "failed", NOW),
        Delivery(new_id(NOW), task_a, "email", "a@example.com", "succeeded", NOW + 1),
    ]
    await store.deliveries_add_many(rows)
    await store.deliveries_add_many(rows[:1])  # the same delivery again: kept once
    await store.deliveries_add_many([])
    assert await store.deliveries_of(task_a) == [rows[0], rows[2]]
    assert await store.deliveries_of(task_b) == [rows[1]]
    assert await store.deliveries_of(new_id(NOW)) == []


async def test_deliveries_are_forgotten_with_their_tasks(record_store: RecordStore) -> None:
    store = make_notification_store(record_store)
    kept, gone = new_id(NOW), new_id(NOW)
    rows = [
        Delivery(new_id(NOW), kept, "webhook", "https://x.example/h", "succeeded", NOW),
        Delivery(new_id(NOW), gone, "webhook", "https://x.example/h", "failed", NOW),
        Delivery(new_id(NOW), gone, "email", "a@example.com", "failed", NOW + 1),
    ]
    await store.deliveries_add_many(rows)
    await store.deliveries_forget([gone])
    await store.deliveries_forget([])
    assert await store.deliveries_of(gone) == []
    assert await store.deliveries_of(kept) == [rows[0]]

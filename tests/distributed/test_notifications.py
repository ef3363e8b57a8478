"""Notifications in distributed mode: deliveries are tasks in the shared tiers, run by any
replica; a subscription made on one replica serves events of tasks run on another."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from standardwebhooks.webhooks import Webhook

from tests.distributed.conftest import Cluster, make_task, submit, wait_for
from tests.receivers import WebhookReceiver
from tierq.engine.notify.subscriptions import SubscriptionIn, new_secret
from tierq.engine.notify.targets import NotifyIn, WebhookIn

pytestmark = pytest.mark.distributed
SECRET = new_secret()
NOTIFY = {"webhook_secret": SECRET, "http_allow_private": "127.0.0.1"}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def test_every_task_is_notified_once_whichever_replica_ran_it(
    cluster: Cluster, receiver: WebhookReceiver
) -> None:
    a = await cluster.engine("a", memory_limit=2, **NOTIFY)
    b = await cluster.engine("b", memory_limit=2, **NOTIFY)
    b_cache = b.notifications.cache if b.notifications else None
    assert a.notifications is not None and b_cache is not None
    b_cache.ttl_s = 0.05  # b sees a's new subscription at once (else within 5 s)
    sub = await a.notifications.subscriptions.create(
        SubscriptionIn(url=receiver.url + "/sub", events=["succeeded"])
    )
    tasks = [
        make_task(a, payload={"sleep_ms": 20}, notify=NotifyIn(WebhookIn(receiver.url + "/own")))
        for _ in range(30)
    ]
    ids = await submit(a, *tasks)
    own = await receiver.wait_for(30, path="/own", timeout=20)
    subscribed = await receiver.wait_for(30, path="/sub", timeout=20)
    assert sorted(
        Webhook(SECRET).verify(r.body, r.headers)["data"]["task_id"] for r in own
    ) == sorted(ids)
    assert sorted(
        Webhook(sub.secret).verify(r.body, r.headers)["data"]["task_id"] for r in subscribed
    ) == sorted(ids)
    nodes = {Webhook(SECRET).verify(r.body, r.headers)["data"]["node"] for r in own}
    assert nodes == {"a", "b"}
    # Each delivery once: sixty distinct message ids for sixty deliveries.
    assert len({r.headers["webhook-id"] for r in own + subscribed}) == 60

    async def all_indexed() -> bool:
        for task_id in ids:
            if len(await a.notifications.report(task_id, a.store.task_get_many, a.executions)) != 2:
                return False
        return True

    await wait_for(all_indexed, timeout=10)

"""A notification pending when the server is SIGKILLed is delivered after the restart: the
delivery is a task in the record tier, not a request held in memory. Real ``tierq serve``
processes on one SQLite file, a real HTTP receiver."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from tests.receivers import Answer, WebhookReceiver
from tests.system.cluster import EmbeddedServer
from tierq.engine.notify.subscriptions import new_secret

pytestmark = pytest.mark.slow


async def test_a_pending_webhook_survives_sigkill(tmp_path: Path) -> None:
    secret = new_secret()
    env = {
        "TIERQ_WEBHOOK_SECRET": secret,
        "TIERQ_HTTP_ALLOW_PRIVATE": "127.0.0.1",
        "TIERQ_NOTIFY_RETRY_BASE_S": "0.2",
        "TIERQ_NOTIFY_RETRY_MAX_S": "0.5",
    }
    receiver = WebhookReceiver()
    receiver.default = Answer(503)  # the receiver is down at first: the delivery waits
    await receiver.start()
    first = EmbeddedServer(tmp_path / "n.db", tmp_path / "first.log", env)
    second = EmbeddedServer(tmp_path / "n.db", tmp_path / "second.log", env)
    try:
        async with aiohttp.ClientSession() as session:
            first.start()
            await first.wait_ready(session)
            async with session.post(
                first.base + "/api/v1/tasks",
                json={"type": "noop", "notify": {"webhook": {"url": receiver.url + "/in"}}},
            ) as resp:
                assert resp.status == 201
                task_id = (await resp.json())["id"]
            await receiver.wait_for(2)  # tried, and being retried
            first.kill()  # SIGKILL: no shutdown code runs
            tried_before = len(receiver.requests)
            receiver.default = Answer(200)
            second.start()
            await second.wait_ready(session)
            requests = await receiver.wait_for(tried_before + 1, timeout=20)
            delivered = requests[-1]
            envelope = Webhook(secret).verify(delivered.body, delivered.headers)
            assert envelope["data"]["task_id"] == task_id
            # The same delivery as before the kill (its id), not a new one.
            assert {r.headers["webhook-id"] for r in requests} == {
                requests[0].headers["webhook-id"]
            }
            deadline = time.monotonic() + 10
            while True:
                async with session.get(f"{second.base}/api/v1/tasks/{task_id}/notifications") as r:
                    (item,) = (await r.json())["items"]
                if item["status"] == "delivered":
                    break
                assert time.monotonic() < deadline
            codes = [a["status_code"] for a in item["attempts"]]
            assert codes[-1] == 200 and set(codes[:-1]) <= {503, None}
    finally:
        first.kill()
        second.kill()
        await receiver.stop()

"""Webhook and email notifications over real connections: a real HTTP receiver (signatures
checked with the ``standardwebhooks`` reference library, not with tierq's code), a real SMTP
server (aiosmtpd), a real embedded server; subscriptions through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.helpers import poll_until, wait_for
from tests.receivers import Answer, SmtpReceiver, WebhookReceiver
from tierq.api.routes import ENGINE
from tierq.engine.notify.subscriptions import new_secret

from .conftest import Client, MakeClient, get_task, submit, wait_status

SECRET = new_secret()
OLD_SECRET = new_secret()
FAST: dict[str, Any] = {
    "webhook_secret": SECRET,
    "http_allow_private": "127.0.0.1",
    "notify_retry_base_s": 0.05,
    "notify_retry_max_s": 0.2,
}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
def smtp() -> Any:
    server = SmtpReceiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def verified(secret: str, request: Any) -> Any:
    """The body, verified by the reference implementation (raises if the signature is bad)."""
    return Webhook(secret).verify(request.body, request.headers)


async def notifications(client: Client, task_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/v1/tasks/{task_id}/notifications")
    body = await resp.json()
    assert resp.status == 200, body
    return list(body["items"])


async def settled(client: Client, task_id: str, status: str = "delivered") -> dict[str, Any]:
    """The task's first delivery, once it has reached ``status``."""
    items = await poll_until(
        lambda: notifications(client, task_id),
        lambda items: bool(items) and items[0]["status"] == status,
        what=f"a {status} notification of {task_id}",
    )
    return items[0]


async def test_a_task_webhook_is_signed_and_carries_the_task(
    make_client: MakeClient, receiver: WebhookReceiver
) -> None:
    client = await make_client(**FAST)
    task = await submit(
        client,
        type="dummy",
        name="resize",
        payload={"result": {"width": 640}},
        notify={"webhook": {"url": receiver.url + "/hook"}},
    )
    assert task["notify"] == {
        "webhook": {"url": receiver.url + "/hook", "events": ["succeeded", "failed", "cancelled"]}
    }
    (request,) = await receiver.wait_for(1)
    envelope = verified(SECRET, request)
    assert request.path == "/hook" and request.headers["Content-Type"] == "application/json"
    assert envelope["type"] == "task.succeeded" and envelope["timestamp"].endswith("Z")
    data = envelope["data"]
    assert data["task_id"] == task["id"] and data["name"] == "resize"
    assert (data["status"], data["event"], data["attempts"]) == ("succeeded", "succeeded", 1)
    assert data["result"] == {"width": 640} and data["error"] is None
    assert data["type"] == "dummy" and data["queue"] == "default"
    assert data["created_at"] and data["started_at"] and data["finished_at"]
    assert data["duration_seconds"] >= 0
    assert len(request.body) < 20_000
    # The attempt is listed with its status code and latency.

    item = await settled(client, task["id"])
    assert (item["channel"], item["target"], item["event"]) == (
        "webhook",
        receiver.url + "/hook",
        "succeeded",
    )
    assert item["attempts"][0]["status_code"] == 200
    assert item["attempts"][0]["latency_ms"] is not None


async def test_retries_keep_the_id_re_sign_and_honour_retry_after(
    make_client: MakeClient, receiver: WebhookReceiver
) -> None:
    client = await make_client(**FAST)
    receiver.script.extend(
        [Answer(503, {"Retry-After": "1"}), Answer(500), Answer(302, {"Location": "/elsewhere"})]
    )
    task = await submit(client, type="noop", notify={"webhook": {"url": receiver.url + "/h"}})
    requests = await receiver.wait_for(4, timeout=15)
    for request in requests:
        assert verified(SECRET, request)["data"]["task_id"] == task["id"]
    ids = {r.headers["webhook-id"] for r in requests}
    assert len(ids) == 1 and ids.pop().startswith("msg_")
    # Retry-After: 1 held the second attempt back a second; the others followed the backoff.
    assert requests[1].at - requests[0].at >= 0.95
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests]
    assert stamps[1] > stamps[0]  # signed afresh, with a new timestamp
    # The 302 was a failure, not followed.
    assert all(r.path == "/h" for r in requests)

    item = await settled(client, task["id"])
    assert [a["status_code"] for a in item["attempts"]] == [503, 500, 302, 200]
    assert [a["outcome"] for a in item["attempts"]] == ["failed", "failed", "failed", "succeeded"]
    # A notification never changes the task.
    assert (await get_task(client, task["id"]))["status"] == "succeeded"
    metrics = await (await client.get("/metrics")).text()
    assert 'tierq_notifications_total{channel="webhook",outcome="failed"} 3.0' in metrics
    assert 'tierq_notifications_total{channel="webhook",outcome="delivered"} 1.0' in metrics


async def test_during_a_rotation_each_key_signs(
    make_client: MakeClient, receiver: WebhookReceiver
) -> None:
    client = await make_client(**{**FAST, "webhook_secret": f"{SECRET},{OLD_SECRET}"})
    await submit(client, type="noop", notify={"webhook": {"url": receiver.url}})
    (request,) = await receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    # A receiver still on the old key and one already on the new one both accept it.
    assert verified(OLD_SECRET, request)["type"] == "task.succeeded"
    assert verified(SECRET, request)["type"] == "task.succeeded"


async def test_events_and_channels_are_chosen_per_task(
    make_client: MakeClient, receiver: WebhookReceiver
) -> None:
    client = await make_client(**FAST)
    failing = await submit(
        client,
        type="dummy",
        payload={"fail_times": 1},
        max_retries=1,
        notify={"webhook": {"url": receiver.url, "events": ["attempt_failed", "started"]}},
    )
    requests = await receiver.wait_for(3)
    await wait_status(client, failing["id"], "succeeded")
    await asyncio.sleep(0.3)  # nothing else may arrive
    kinds = [verified(SECRET, r)["type"] for r in receiver.requests]
    assert sorted(kinds) == ["task.attempt_failed", "task.started", "task.started"]
    retry = next(verified(SECRET, r) for r in requests if "attempt_failed" in r.json["type"])
    assert retry["data"]["retry_at"] and retry["data"]["error"].startswith("TaskError")


@pytest.mark.parametrize(
    ("notify", "path"),
    [
        ({"webhook": {"url": "ftp://example.com/x"}}, "$.notify.webhook.url"),
        ({"webhook": {"url": "not a url"}}, "$.notify.webhook.url"),
        ({"webhook": {"url": "http://user:pw@example.com/"}}, "$.notify.webhook.url"),
        ({"webhook": {"url": "http://10.0.0.1/hook"}}, "$.notify.webhook.url"),
        ({"webhook": {"url": "http://[::1]/hook"}}, "$.notify.webhook.url"),
        (
            {"webhook": {"url": "https://example.com", "events": ["done"]}},
            "$.notify.webhook.events[0]",
        ),
        ({"webhook": {"url": "https://example.com", "events": []}}, "$.notify.webhook.events"),
        ({"webhook": {"url": "https://example.com", "extra": 1}}, "$.notify.webhook.extra"),
        ({"email": {"to": ["not-an-address"]}}, "$.notify.email.to[0]"),
        ({"email": {"to": ["a@example.com", "b@x\r\nBcc: c@x"]}}, "$.notify.email.to[1]"),
        ({"email": {"to": []}}, "$.notify.email.to"),
        ({"sms": {}}, "$.notify.sms"),
    ],
)
async def test_bad_notify_is_422_with_the_path_and_nothing_is_accepted(
    make_client: MakeClient, notify: dict[str, Any], path: str
) -> None:
    client = await make_client(**{**FAST, "http_allow_private": "", "smtp_host": "127.0.0.1"})
    resp = await client.post("/api/v1/tasks", json={"type": "noop", "notify": notify})
    body = await resp.json()
    assert resp.status == 422, body
    assert body["error"]["details"]["path"] == path, body
    # In a batch: the path points into it, and no task of the batch is stored.
    batch = [{"type": "noop"}, {"type": "noop", "notify": notify}]
    resp = await client.post("/api/v1/tasks/batch", json=batch)
    body = await resp.json()
    assert resp.status == 422 and body["error"]["details"]["path"] == path.replace("$", "$[1]")
    stats = await (await client.get("/api/v1/tasks/statistics")).json()
    assert stats["total"] == 0


async def test_a_channel_the_server_cannot_send_is_refused(make_client: MakeClient) -> None:
    client = await make_client()  # no webhook key, no SMTP server
    for notify, path in (
        ({"webhook": {"url": "https://example.com/h"}}, "$.notify.webhook"),
        ({"email": {"to": ["ops@example.com"]}}, "$.notify.email"),
    ):
        resp = await client.post("/api/v1/tasks", json={"type": "noop", "notify": notify})
        body = await resp.json()
        assert resp.status == 422 and body["error"]["details"]["path"] == path
        assert "TIERQ_" in body["error"]["message"]


async def test_a_name_resolving_to_a_refused_address_is_never_called(
    make_client: MakeClient, receiver: WebhookReceiver
) -> None:
    """localhost passes at submit (a name), and is refused when resolved: the guard checks
    the address actually connected to (DNS rebinding cannot pass either)."""
    client = await make_client(**{**FAST, "http_allow_private": ""})
    task = await submit(
        client, type="noop", notify={"webhook": {"url": f"http://localhost:{receiver.port}/"}}
    )

    item = await settled(client, task["id"], "failed")
    assert (
        "refused" in item["attempts"][0]["error"] or "not allowed" in item["attempts"][0]["error"]
    )
    assert receiver.requests == []


async def test_subscriptions_receive_matching_events_with_their_own_secret(
    make_client: MakeClient, receiver: WebhookReceiver
) -> None:
    client = await make_client(**FAST)
    resp = await client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url + "/all-failures", "events": ["failed"], "queue": "jobs"},
    )
    created = await resp.json()
    assert resp.status == 201, created
    secret = created["secret"]
    assert secret.startswith("whsec_") and secret != SECRET
    # The secret is shown once: never in a read.
    listed = await (await client.get("/api/v1/webhooks")).json()
    assert [s["id"] for s in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]
    one = await (await client.get(f"/api/v1/webhooks/{created['id']}")).json()
    assert "secret" not in one and one["events"] == ["failed"] and one["enabled"] is True
    # A failure in the queue is delivered; one elsewhere, or a success, is not.
    failed = await submit(
        client, type="dummy", queue="jobs", payload={"fail_always": True}, max_retries=0
    )
    await submit(client, type="dummy", queue="other", payload={"fail_always": True}, max_retries=0)
    await submit(client, type="noop", queue="jobs")
    (request,) = await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1
    envelope = verified(secret, request)
    assert envelope["type"] == "task.failed" and envelope["data"]["task_id"] == failed["id"]
    assert envelope["data"]["error"].startswith("TaskError: dummy: fail_always")
    with pytest.raises(Exception):
        verified(SECRET, request)
    (item,) = await notifications(client, failed["id"])
    assert item["subscription_id"] == created["id"]
    # Disabled by hand: nothing more. Deleted: gone.
    resp = await client.patch(f"/api/v1/webhooks/{created['id']}", json={"enabled": False})
    assert (await resp.json())["enabled"] is False
    await submit(client, type="dummy", queue="jobs", payload={"fail_always": True}, max_retries=0)
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 1
    resp = await client.delete(f"/api/v1/webhooks/{created['id']}")
    assert resp.status == 204
    resp = await client.get(f"/api/v1/webhooks/{created['id']}")
    assert resp.status == 404


async def test_bad_subscriptions_are_422_with_the_path(make_client: MakeClient) -> None:
    client = await make_client(**{**FAST, "http_allow_private": ""})
    for body, path in (
        ({"url": "ftp://x.example"}, "$.url"),
        ({"url": "http://192.168.1.1/"}, "$.url"),
        ({"url": "https://x.example", "events": ["succeeded", "nope"]}, "$.events[1]"),
        ({"url": "https://x.example", "secret": "mine"}, "$.secret"),
        ({"events": ["failed"]}, "$"),
    ):
        resp = await client.post("/api/v1/webhooks", json=body)
        answer = await resp.json()
        assert resp.status == 422, answer
        assert answer["error"]["details"]["path"] == path, answer
    resp = await client.patch(
        "/api/v1/webhooks/00000000-0000-7000-8000-000000000000", json={"enabled": True}
    )
    assert resp.status == 404


async def test_410_disables_a_subscription_and_says_so_in_an_event(
    make_client: MakeClient, receiver: WebhookReceiver
) -> None:
    client = await make_client(**FAST)
    created = await (
        await client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["succeeded"]})
    ).json()
    receiver.default = Answer(410)
    await submit(client, type="noop")
    await receiver.wait_for(1)

    async def disabled() -> bool:
        sub = await (await client.get(f"/api/v1/webhooks/{created['id']}")).json()
        return sub["enabled"] is False

    await wait_for(disabled)
    sub = await (await client.get(f"/api/v1/webhooks/{created['id']}")).json()
    assert "410" in sub["disabled_reason"]

    async def announced() -> bool:
        resp = await client.get(
            "/api/v1/events",
            params={"event": "webhook_disabled"},
            headers={"Accept": "application/json"},
        )
        return bool((await resp.json())["items"])

    await wait_for(announced)
    resp = await client.get(
        "/api/v1/events",
        params={"event": "webhook_disabled"},
        headers={"Accept": "application/json"},
    )
    (event,) = (await resp.json())["items"]
    assert event["subscription_id"] == created["id"] and "410" in event["error"]


async def test_a_subscription_failing_past_the_horizon_is_disabled(
    make_client: MakeClient, receiver: WebhookReceiver
) -> None:
    client = await make_client(**{**FAST, "notify_retry_horizon_s": 0.5})
    created = await (
        await client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["succeeded"]})
    ).json()
    receiver.default = Answer(500)
    task = await submit(client, type="noop")

    await settled(client, task["id"], "failed")
    sub = await (await client.get(f"/api/v1/webhooks/{created['id']}")).json()
    assert sub["enabled"] is False and "longer than" in sub["disabled_reason"]
    assert len(receiver.requests) >= 2  # retried until the horizon
    assert (await get_task(client, task["id"]))["status"] == "succeeded"


async def test_email_notifications_reach_a_real_smtp_server(
    make_client: MakeClient, smtp: SmtpReceiver
) -> None:
    client = await make_client(
        **FAST, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="tierq@example.com"
    )
    task = await submit(
        client,
        type="dummy",
        name="nightly-report",
        payload={"fail_always": True},
        max_retries=0,
        notify={"email": {"to": ["ops@example.com", "lead@example.com"]}},
    )
    (message,) = await smtp.wait_for(1)
    assert message["Subject"] == "[tierq] task nightly-report failed"
    assert message["From"] == "tierq@example.com"
    assert message["To"] == "ops@example.com, lead@example.com"
    assert message["X-Envelope-To"] == "ops@example.com, lead@example.com"
    text = message.get_content()
    assert task["id"] in text and "Status:    failed" in text
    assert "TaskError: dummy: fail_always is set" in text

    item = await settled(client, task["id"])
    assert item["channel"] == "email" and item["target"] == "ops@example.com, lead@example.com"


async def test_a_task_name_with_line_breaks_makes_a_one_line_subject(
    make_client: MakeClient, smtp: SmtpReceiver
) -> None:
    client = await make_client(smtp_host="127.0.0.1", smtp_port=smtp.port)
    await submit(
        client,
        type="noop",
        name="report\r\nBcc: someone@example.com",
        notify={"email": {"to": ["ops@example.com"], "events": ["succeeded"]}},
    )
    (message,) = await smtp.wait_for(1)
    assert message["Subject"] == "[tierq] task report Bcc: someone@example.com succeeded"
    assert message["Bcc"] is None and message["X-Envelope-To"] == "ops@example.com"


async def test_the_email_task_type_sends_what_it_is_given(
    make_client: MakeClient, smtp: SmtpReceiver
) -> None:
    client = await make_client(smtp_host="127.0.0.1", smtp_port=smtp.port)
    task = await submit(
        client,
        type="email",
        payload={"to": "user@example.com", "subject": "Welcome", "text": "Hello there."},
    )
    (message,) = await smtp.wait_for(1)
    assert (message["To"], message["Subject"]) == ("user@example.com", "Welcome")
    assert message.get_content().strip() == "Hello there."
    done = await wait_status(client, task["id"], "succeeded")
    assert done["result"]["sent_to"] == ["user@example.com"]
    for payload, path in (
        ({"to": "nobody", "subject": "x"}, "$.payload.to"),
        ({"to": ["a@example.com", 3], "subject": "x"}, "$.payload.to[1]"),
        ({"to": "a@example.com", "subject": "two\nlines"}, "$.payload.subject"),
        ({"to": "a@example.com"}, "$.payload.subject"),
        ({"to": "a@example.com", "subject": "x", "cc": "b@example.com"}, "$.payload.cc"),
    ):
        resp = await client.post("/api/v1/tasks", json={"type": "email", "payload": payload})
        body = await resp.json()
        assert resp.status == 422 and body["error"]["details"]["path"] == path, (payload, body)


async def test_an_smtp_outage_is_retried_until_it_is_back(make_client: MakeClient) -> None:
    smtp = SmtpReceiver()  # not started yet: connections are refused
    client = await make_client(**FAST, smtp_host="127.0.0.1", smtp_port=smtp.port)
    task = await submit(client, type="noop", notify={"email": {"to": ["ops@example.com"]}})

    async def failed_once() -> bool:
        items = await notifications(client, task["id"])
        return bool(items) and len(items[0]["attempts"]) >= 2

    await wait_for(failed_once)
    smtp.start()
    try:
        await smtp.wait_for(1, timeout=15)
    finally:
        smtp.stop()
    engine = client.server.app[ENGINE]
    assert (
        engine.metrics.registry.get_sample_value(
            "tierq_notifications_total", {"channel": "email", "outcome": "failed"}
        )
        >= 2
    )

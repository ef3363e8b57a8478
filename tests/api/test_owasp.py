"""The OWASP API Security Top 10 (2023), item by item, against a real embedded server with
tenants, keys and roles. Broken authentication is covered in depth by test_access.py and
test_jwt.py; function-level authorization by test_access.py's role x route matrix; this
module checks each item's core here so the list can be read in one place."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tierq.api.permissions import Permission
from tierq.api.table import ROUTES

from .conftest import Client, MakeClient, auth, expect_error, new_key

TASKS = "/api/v1/tasks"


async def made(client: Client, key: str, path: str, body: Any) -> dict[str, Any]:
    resp = await client.post(path, json=body, headers=auth(key))
    data = await resp.json()
    assert resp.status in (200, 201), data
    return data  # type: ignore[no-any-return]


# ---- API1: broken object level authorization ------------------------------------------------


async def test_api1_another_tenants_objects_are_not_found_on_every_route(
    make_client: MakeClient,
) -> None:
    client = await make_client(http_allow_private="127.0.0.1")
    acme, globex = await new_key(client, tenant="acme"), await new_key(client, tenant="globex")
    task = await made(client, acme, TASKS, {"type": "noop", "delay_seconds": 3600})
    failed = await made(client, acme, TASKS, {"type": "noop", "delay_seconds": 3600})
    await made(client, acme, f"{TASKS}/{failed['id']}/cancel", {})
    schedule = await made(
        client,
        acme,
        "/api/v1/schedules",
        {"name": "nightly", "cron": "0 3 * * *", "task": {"type": "noop"}},
    )
    hook = await made(
        client, acme, "/api/v1/webhooks", {"url": "http://127.0.0.1:9/h", "events": ["failed"]}
    )
    key = await made(client, acme, "/api/v1/keys", {"name": "k", "role": "viewer"})
    ids = {
        "task_id": task["id"],
        "schedule_id": schedule["id"],
        "webhook_id": hook["id"],
        "key_id": key["id"],
    }
    bodies: dict[str, Any] = {"PATCH": {"enabled": False}, "POST": {}}
    walked = 0
    for route in ROUTES:
        names = [n for n in ids if "{" + n + "}" in route.path]
        if not names:
            continue
        path = route.path
        for name in names:
            target = failed["id"] if route.path.endswith("/retry") else ids[name]
            path = path.replace("{" + name + "}", target)
        if route.path == TASKS + "/{task_id}":
            path += "?wait_seconds=0.1" if route.method == "GET" else ""
        body = bodies.get(route.method)
        if route.path.startswith("/api/v1/schedules/{schedule_id}") and route.method == "PATCH":
            body = {"description": "taken over"}
        resp = await client.request(route.method, path, json=body, headers=auth(globex))
        await expect_error(resp, 404, "not_found")
        walked += 1
    assert walked == sum(1 for r in ROUTES if any("{" + n + "}" in r.path for n in ids))
    assert walked >= 19  # tasks 7, schedules 7, webhooks 3, keys 2 (as of this writing)
    # Nothing changed for the owner.
    resp = await client.get(f"{TASKS}/{task['id']}", headers=auth(acme))
    assert resp.status == 200 and (await resp.json())["status"] == "scheduled"
    resp = await client.get(f"/api/v1/schedules/{schedule['id']}", headers=auth(acme))
    assert resp.status == 200 and (await resp.json())["paused"] is False


async def test_api1_lists_statistics_and_events_show_the_callers_tenant_only(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    acme, globex = await new_key(client, tenant="acme"), await new_key(client, tenant="globex")
    platform = await new_key(client, tenant="*")
    mine = await made(client, acme, f"{TASKS}/batch", [{"type": "noop"}] * 3)
    theirs = await made(client, globex, TASKS, {"type": "noop", "idempotency_key": "same"})
    # Idempotency keys are per tenant: the same key in another tenant is another task.
    again = await made(client, acme, TASKS, {"type": "noop", "idempotency_key": "same"})
    assert again["id"] != theirs["id"] and again["tenant"] == "acme"

    listed = await (await client.get(TASKS, headers=auth(acme))).json()
    assert {t["tenant"] for t in listed["items"]} == {"acme"}
    assert len(listed["items"]) == 4 and theirs["id"] not in {t["id"] for t in listed["items"]}
    stats = await (await client.get(f"{TASKS}/statistics", headers=auth(globex))).json()
    assert stats["total"] == 1 and stats["memory"] is None and stats["dispatch"] is None
    everyone = await (await client.get(f"{TASKS}/statistics", headers=auth(platform))).json()
    assert everyone["total"] == 5 and everyone["memory"] is not None

    json_page = {"Accept": "application/json"}
    page = await (await client.get("/api/v1/events", headers={**auth(globex), **json_page})).json()
    assert page["items"] and {e["tenant"] for e in page["items"]} == {"globex"}
    probe = await client.get(
        "/api/v1/events", params={"task_id": mine["ids"][0]}, headers={**auth(globex), **json_page}
    )
    assert probe.status == 200 and (await probe.json())["items"] == []

    # Schedule names are unique per tenant.
    body = {"name": "same-name", "every_seconds": 60, "task": {"type": "noop"}}
    await made(client, acme, "/api/v1/schedules", body)
    await made(client, globex, "/api/v1/schedules", body)
    resp = await client.post("/api/v1/schedules", json=body, headers=auth(acme))
    await expect_error(resp, 409, "conflict")
    names = await (await client.get("/api/v1/schedules", headers=auth(acme))).json()
    assert [s["tenant"] for s in names["items"]] == ["acme"]


# ---- API3: broken object property level authorization (mass assignment) ---------------------


async def test_api3_server_owned_fields_cannot_be_set(client: Client) -> None:
    key = await new_key(client, tenant="acme")
    for field, value in (
        ("status", "succeeded"),
        ("tenant", "globex"),
        ("attempt", 5),
        ("node", "n1"),
        ("id", str(uuid.uuid4())),
        ("lease_owner", "me"),
        ("request_id", "forged"),  # taken from the submitting request's X-Request-ID
    ):
        resp = await client.post(TASKS, json={"type": "noop", field: value}, headers=auth(key))
        error = await expect_error(resp, 422, "validation_error")
        assert error["details"]["field"] == field, error
    resp = await client.post(
        f"{TASKS}/batch", json=[{"type": "noop", "tenant": "x"}], headers=auth(key)
    )
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {"path": "$[0].tenant", "index": 0, "field": "tenant"}
    resp = await client.post(
        "/api/v1/schedules",
        json={"name": "s", "every_seconds": 5, "task": {"type": "noop"}, "tenant": "globex"},
        headers=auth(key),
    )
    await expect_error(resp, 422, "validation_error")
    listed = await (await client.get(TASKS, headers=auth(key))).json()
    assert listed["items"] == []  # nothing accepted
    for path in (TASKS, f"{TASKS}/statistics", "/api/v1/events", "/api/v1/schedules"):
        resp = await client.get(path, params={"tenant": "globex"}, headers=auth(key))
        error = await expect_error(resp, 400, "bad_parameter")
        assert error["details"] == {"parameter": "tenant"}


# ---- API4: unrestricted resource consumption ------------------------------------------------


async def test_api4_body_batch_and_rate_caps(make_client: MakeClient) -> None:
    # Every request is charged as it arrives (a batch by its size, refused or not): the 413
    # costs 1, the oversized batch 11, the full batch 10, so the last batch passes the burst.
    client = await make_client(
        max_body_bytes=4096, max_batch=10, rate_submit_per_s=0.05, rate_submit_burst=25
    )
    key = await new_key(client)
    resp = await client.post(
        TASKS,
        data=b'{"type": "noop", "payload": "' + b"x" * 8192 + b'"}',
        headers={**auth(key), "Content-Type": "application/json"},
    )
    await expect_error(resp, 413, "payload_too_large")
    resp = await client.post(f"{TASKS}/batch", json=[{"type": "noop"}] * 11, headers=auth(key))
    await expect_error(resp, 422, "validation_error")
    assert (
        await client.post(f"{TASKS}/batch", json=[{"type": "noop"}] * 10, headers=auth(key))
    ).status == 201
    resp = await client.post(f"{TASKS}/batch", json=[{"type": "noop"}] * 5, headers=auth(key))
    await expect_error(resp, 429, "rate_limited")
    assert "Retry-After" in resp.headers


# ---- API5: broken function level authorization ----------------------------------------------


async def test_api5_lower_roles_are_refused_operator_and_admin_routes(client: Client) -> None:
    viewer, submitter = await new_key(client, "viewer"), await new_key(client, "submitter")
    admin = await new_key(client)
    task = await made(client, admin, TASKS, {"type": "noop", "delay_seconds": 3600})
    for key in (viewer, submitter):
        for method, path in (
            ("POST", f"{TASKS}/{task['id']}/cancel"),
            ("DELETE", f"{TASKS}/{task['id']}"),
            ("POST", "/api/v1/keys"),
            ("GET", "/api/v1/keys"),
            ("GET", "/api/v1/audit"),
            ("GET", "/api/v1/webhooks"),
        ):
            resp = await client.request(method, path, json={}, headers=auth(key))
            await expect_error(resp, 403, "forbidden")
    resp = await client.post(TASKS, json={"type": "noop"}, headers=auth(viewer))
    await expect_error(resp, 403, "forbidden")
    assert (await client.post(TASKS, json={"type": "noop"}, headers=auth(submitter))).status == 201
    assert all(r.permission is not None for r in ROUTES)
    assert {r.permission for r in ROUTES if r.path.startswith("/api/v1/keys")} == {
        Permission.KEYS_ADMIN
    }


# ---- API7: server side request forgery -----------------------------------------------------


async def test_api7_private_and_metadata_addresses_are_refused(client: Client) -> None:
    key = await new_key(client)
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:6379/",
        "http://10.0.0.1/x",
    ):
        resp = await client.post(
            TASKS, json={"type": "http", "payload": {"url": url}}, headers=auth(key)
        )
        error = await expect_error(resp, 422, "validation_error")
        assert error["details"]["field"].startswith("payload"), error
        resp = await client.post(
            "/api/v1/webhooks", json={"url": url, "events": ["failed"]}, headers=auth(key)
        )
        error = await expect_error(resp, 422, "validation_error")
        assert error["details"]["field"] == "url"


# ---- API8: security misconfiguration -------------------------------------------------------


async def test_api8_no_stack_no_version_in_any_error(client: Client) -> None:
    key = await new_key(client)
    probes = [
        ("GET", "/api/v1/tasks/not-an-id", None, auth(key)),
        ("POST", TASKS, b"{not json", {**auth(key), "Content-Type": "application/json"}),
        ("POST", TASKS, b"[]", {**auth(key), "Content-Type": "text/plain"}),
        ("GET", "/nothing", None, {}),
        ("PUT", TASKS, None, auth(key)),
        ("GET", TASKS, None, {"X-API-Key": "tq_" + "x" * 5000}),
        ("GET", f"{TASKS}?page=abc", None, auth(key)),
    ]
    for method, path, data, headers in probes:
        resp = await client.request(method, path, data=data, headers=headers)
        text = await resp.text()
        assert 400 <= resp.status < 500, (path, resp.status)
        assert resp.headers["Server"] == "tierq"
        for leak in ("Traceback", 'File "', "aiohttp", "Python/", "line "):
            assert leak not in text, (path, text)
        assert resp.content_type == "application/json"
    resp = await client.get("/health/live")
    assert resp.headers["Server"] == "tierq"


async def test_api1_a_webhook_subscription_hears_its_own_tenants_events(
    make_client: MakeClient,
) -> None:
    from tests.receivers import WebhookReceiver

    receiver = WebhookReceiver()
    await receiver.start()
    try:
        client = await make_client(
            http_allow_private="127.0.0.1", notify_retry_base_s=0.05, notify_retry_max_s=0.2
        )
        acme, globex = await new_key(client, tenant="acme"), await new_key(client, tenant="globex")
        await made(
            client,
            acme,
            "/api/v1/webhooks",
            {"url": receiver.url + "/acme", "events": ["succeeded"]},
        )
        theirs = await made(client, globex, TASKS, {"type": "noop"})
        mine = await made(client, acme, TASKS, {"type": "noop"})
        (delivered,) = await receiver.wait_for(1, timeout=10)
        assert delivered.json["data"]["task_id"] == mine["id"]
        # The other tenant's task finished too, and was never delivered to acme's hook.
        resp = await client.get(f"{TASKS}/{theirs['id']}?wait_seconds=5", headers=auth(globex))
        assert (await resp.json())["status"] == "succeeded"
        await asyncio.sleep(0.3)
        assert [r.json["data"]["task_id"] for r in receiver.requests] == [mine["id"]]
        # The delivery is acme's task, not globex's.
        deliveries = await (
            await client.get(f"{TASKS}/{mine['id']}/notifications", headers=auth(acme))
        ).json()
        assert len(deliveries["items"]) == 1
        listed = await (
            await client.get(TASKS, params={"queue": "tierq.notifications"}, headers=auth(globex))
        ).json()
        assert listed["items"] == []
    finally:
        await receiver.stop()

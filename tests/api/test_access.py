"""Access control over real HTTP against a real embedded server: every route's permission for
every role (walked from the route table, checked against the app's router), the key lifecycle
(secret shown once, hashed at rest, revocation, rotation with a grace period), uniform 401s,
rate limits with their headers, the brute-force guard, load shedding and the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any

import orjson
import pytest

from tests.helpers import poll_until
from tierq.api.auth.access import ACCESS
from tierq.api.auth.keys import PREFIX, well_formed
from tierq.api.permissions import ROLE_PERMISSIONS, Permission
from tierq.api.routing import Route
from tierq.api.table import ROUTES
from tierq.model import AuditFilter

from .conftest import Client, MakeClient, auth, expect_error, new_key, submit

TASKS = "/api/v1/tasks"
FAST_CACHE = {"auth_cache_s": 0.2, "http_allow_private": "127.0.0.1"}


def test_every_route_of_the_app_is_in_the_table_with_a_permission(client: Client) -> None:
    """The router is built from the table, and nothing else adds a route: each (method, path)
    of the running app has exactly one declaration, and each declaration a permission."""
    declared = {(r.method, r.path) for r in ROUTES}
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()  # type: ignore[union-attr]
        if route.resource is not None and route.method != "HEAD"
    }
    assert served == declared
    assert all(isinstance(r.permission, Permission) for r in ROUTES)
    assert len(declared) == len(ROUTES)


class Fixtures:
    """What a route acts on: made with an admin key, fresh for each call that changes it."""

    def __init__(self, client: Client, admin: str) -> None:
        self.client = client
        self.admin = auth(admin)

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        resp = await self.client.post(path, json=body, headers=self.admin)
        data = await resp.json()
        assert resp.status in (200, 201), data
        return data  # type: ignore[no-any-return]

    async def task(self, cancelled: bool = False) -> str:
        task = await self.post(TASKS, {"type": "noop", "delay_seconds": 3600})
        if cancelled:
            await self.post(f"{TASKS}/{task['id']}/cancel", {})
        return str(task["id"])

    async def running_external(self) -> str:
        task = await self.post(TASKS, {"type": "external"})

        async def status() -> str:
            resp = await self.client.get(f"{TASKS}/{task['id']}", headers=self.admin)
            return str((await resp.json())["status"])

        await poll_until(status, lambda s: s == "running", timeout=10)
        return str(task["id"])

    async def schedule(self) -> str:
        body = {"name": uuid.uuid4().hex, "every_seconds": 3600, "task": {"type": "noop"}}
        return str((await self.post("/api/v1/schedules", body))["id"])

    async def webhook(self) -> str:
        body = {"url": "http://127.0.0.1:9/hook", "events": ["failed"]}
        return str((await self.post("/api/v1/webhooks", body))["id"])

    async def key(self) -> str:
        return str((await self.post("/api/v1/keys", {"name": "k", "role": "viewer"}))["id"])

    async def request_for(self, route: Route) -> tuple[str, Any]:
        """(path, JSON body or None) of a call to ``route`` that succeeds for a role that
        holds its permission."""
        path, body = route.path, None
        if path == "/api/v1/tasks/{task_id}/status":  # an outside worker's report
            task_id = await self.running_external()
            return path.replace("{task_id}", task_id) + "?status=COMPLETED", None
        if "{task_id}" in path:
            path = path.replace("{task_id}", await self.task(cancelled=path.endswith("retry")))
        if "{schedule_id}" in path:
            path = path.replace("{schedule_id}", await self.schedule())
        if "{webhook_id}" in path:
            path = path.replace("{webhook_id}", await self.webhook())
        if "{key_id}" in path:
            path = path.replace("{key_id}", await self.key())
        path = path.replace("{queue}", "matrix").replace("{key}", "matrix")
        if route.method in ("POST", "PATCH"):
            body = {
                ("POST", "/api/v1/tasks"): {"type": "noop"},
                ("POST", "/api/v1/tasks/batch"): [{"type": "noop"}],
                ("POST", "/api/v1/schedules"): {
                    "name": uuid.uuid4().hex,
                    "cron": "0 0 * * *",
                    "task": {"type": "noop"},
                },
                ("PATCH", "/api/v1/schedules/{schedule_id}"): {"description": "changed"},
                ("POST", "/api/v1/webhooks"): {"url": "http://127.0.0.1:9/h", "events": ["failed"]},
                ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"enabled": False},
                ("POST", "/api/v1/keys"): {"name": "made", "role": "viewer"},
                ("PATCH", "/api/v1/queues/{queue}"): {"max_running": 5},
            }.get((route.method, route.path), {})
        if route.path == "/api/v1/schedules/preview":
            path += "?cron=*/5+*+*+*+*"
        return path, body


@pytest.mark.parametrize("role", list(ROLE_PERMISSIONS))
async def test_role_by_route_matrix(make_client: MakeClient, role: str) -> None:
    client = await make_client(**FAST_CACHE)
    fixtures = Fixtures(client, await new_key(client, "admin"))
    key = await new_key(client, role)
    held = ROLE_PERMISSIONS[role]
    checked = 0
    for route in ROUTES:
        if route.permission is Permission.PUBLIC:
            continue
        path, body = await fixtures.request_for(route)
        headers = {**auth(key), "Accept": "application/json"}
        resp = await client.request(route.method, path, json=body, headers=headers)
        text = await resp.text()
        if route.permission in held:
            assert 200 <= resp.status < 300, (role, route.method, route.path, resp.status, text)
        else:
            assert resp.status == 403, (role, route.method, route.path, resp.status, text)
            assert '"forbidden"' in text and str(route.permission) in text
        checked += 1
    assert checked == sum(1 for r in ROUTES if r.permission is not Permission.PUBLIC)


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(client: Client) -> None:
    admin = await new_key(client)
    resp = await client.post(
        "/api/v1/keys", json={"name": "ci", "role": "submitter"}, headers=auth(admin)
    )
    made = await resp.json()
    assert resp.status == 201, made
    secret = made["secret"]
    assert secret.startswith(PREFIX) and well_formed(secret)
    assert made["prefix"] == secret[: len(made["prefix"])] and len(made["prefix"]) < 16
    listed = await (await client.get("/api/v1/keys", headers=auth(admin))).json()
    assert all("secret" not in k for k in listed["items"])
    one = await (await client.get(f"/api/v1/keys/{made['id']}", headers=auth(admin))).json()
    assert "secret" not in one and one["role"] == "submitter" and one["tenant"] == "default"
    stored = await client.app[ACCESS].keys.get(made["id"], None)  # type: ignore[index]
    assert stored is not None
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(stored)
    resp = await client.post(TASKS, json={"type": "noop"}, headers=auth(secret))
    assert resp.status == 201


async def test_every_authentication_failure_looks_the_same(make_client: MakeClient) -> None:
    client = await make_client(**FAST_CACHE)
    admin = await new_key(client)
    expired = await new_key(client, "viewer", expires_at=time.time() + 1.5)
    revoked_id = await (
        await client.post("/api/v1/keys", json={"name": "r", "role": "viewer"}, headers=auth(admin))
    ).json()
    revoked = revoked_id["secret"]
    assert (await client.get(TASKS, headers=auth(revoked))).status == 200
    assert (await client.get(TASKS, headers=auth(expired))).status == 200
    resp = await client.delete(f"/api/v1/keys/{revoked_id['id']}", headers=auth(admin))
    assert resp.status == 200 and (await resp.json())["revoked_at"]
    await asyncio.sleep(1.6)
    typo = admin[:-1] + ("A" if admin[-1] != "A" else "B")
    unknown = "tq_live_" + "A" * 32 + "_" + "000000"
    bodies = []
    for headers in (
        {},
        auth("not-a-key"),
        auth(typo),
        auth(unknown),
        auth(revoked),
        auth(expired),
        {"Authorization": "Bearer " + revoked},
        {"Authorization": "Basic " + admin},
    ):
        resp = await client.get(TASKS, headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="tierq"'
        body = await resp.read()
        assert b"Traceback" not in body
        bodies.append(body)
    assert len(set(bodies)) == 1, bodies


async def test_revocation_reaches_a_cached_key_within_the_cache_time(
    make_client: MakeClient,
) -> None:
    client = await make_client(**FAST_CACHE)
    admin = await new_key(client)
    other = await new_key(client, "viewer")
    assert (await client.get(TASKS, headers=auth(other))).status == 200  # cached now
    access = client.app[ACCESS]  # type: ignore[index]
    (record,) = [k for k in await access.keys.list_keys(None) if k.role == "viewer"]
    # Revoked behind this replica's back (as another replica or the CLI would).
    await access.keys.revoke(record.id, None, time.time())
    revoked_at = time.monotonic()
    # The key was cached before the revocation, so the cached record expires within the
    # cache time after it: no request sent later than that is accepted, however long the
    # requests themselves take.
    last_accepted = revoked_at
    while True:
        sent = time.monotonic()
        if (await client.get(TASKS, headers=auth(other))).status != 200:
            break
        last_accepted = sent
        assert sent - revoked_at < 2.0
        await asyncio.sleep(0.02)
    assert last_accepted - revoked_at < 0.2
    assert (await client.get(TASKS, headers=auth(admin))).status == 200


async def test_rotation_keeps_the_old_secret_for_the_grace_period(client: Client) -> None:
    admin = await new_key(client)
    made = await (
        await client.post(
            "/api/v1/keys", json={"name": "svc", "role": "viewer"}, headers=auth(admin)
        )
    ).json()
    resp = await client.post(
        f"/api/v1/keys/{made['id']}/rotate", json={"grace_seconds": 1.5}, headers=auth(admin)
    )
    rotated = await resp.json()
    assert resp.status == 200, rotated
    assert rotated["secret"] != made["secret"] and well_formed(rotated["secret"])
    assert rotated["previous_valid_until"]
    for secret in (made["secret"], rotated["secret"]):
        assert (await client.get(TASKS, headers=auth(secret))).status == 200
    await asyncio.sleep(1.6)
    assert (await client.get(TASKS, headers=auth(made["secret"]))).status == 401
    assert (await client.get(TASKS, headers=auth(rotated["secret"]))).status == 200
    await expect_error(
        await client.post(
            f"/api/v1/keys/{made['id']}/rotate", json={"grace_seconds": -1}, headers=auth(admin)
        ),
        422,
        "validation_error",
    )


async def test_key_input_is_checked_with_the_field_path(client: Client) -> None:
    admin = await new_key(client)
    for body, field in (
        ({"name": "x", "role": "root"}, "role"),
        ({"name": "", "role": "viewer"}, "name"),
        ({"name": "x", "role": "viewer", "tenant": "a b"}, "tenant"),
        ({"name": "x", "role": "viewer", "expires_in_seconds": 0}, "expires_in_seconds"),
        (
            {"name": "x", "role": "viewer", "rate_limits": {"bulk": {"per_second": 1}}},
            "rate_limits.bulk",
        ),
        (
            {"name": "x", "role": "viewer", "rate_limits": {"read": {"per_second": 0}}},
            "rate_limits.read.per_second",
        ),
        ({"name": "x", "role": "viewer", "secret_hash": "00"}, "secret_hash"),
    ):
        resp = await client.post("/api/v1/keys", json=body, headers=auth(admin))
        error = await expect_error(resp, 422, "validation_error")
        assert error["details"]["field"] == field, (body, error)
    keys = await (await client.get("/api/v1/keys", headers=auth(admin))).json()
    assert len(keys["items"]) == 1  # nothing was saved


async def test_tenant_admins_manage_their_own_tenant_only(client: Client) -> None:
    platform = await new_key(client, "admin", tenant="*")
    acme = await new_key(client, "admin", tenant="acme")
    globex = await new_key(client, "admin", tenant="globex")
    resp = await client.post(
        "/api/v1/keys", json={"name": "a", "role": "viewer"}, headers=auth(acme)
    )
    made = await resp.json()
    assert resp.status == 201 and made["tenant"] == "acme"
    resp = await client.post(
        "/api/v1/keys", json={"name": "b", "role": "viewer", "tenant": "globex"}, headers=auth(acme)
    )
    await expect_error(resp, 403, "forbidden")
    resp = await client.post(
        "/api/v1/keys", json={"name": "p", "role": "admin", "tenant": "*"}, headers=auth(acme)
    )
    await expect_error(resp, 403, "forbidden")
    # Another tenant's key: 404 on every verb, never 403 (which would confirm it exists).
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/rotate")):
        resp = await client.request(
            method, f"/api/v1/keys/{made['id']}{suffix}", headers=auth(globex)
        )
        await expect_error(resp, 404, "not_found")
    tenants = {
        k["tenant"]
        for k in (await (await client.get("/api/v1/keys", headers=auth(acme))).json())["items"]
    }
    assert tenants == {"acme"}
    everyone = (await (await client.get("/api/v1/keys", headers=auth(platform))).json())["items"]
    assert {k["tenant"] for k in everyone} == {"*", "acme", "globex"}
    resp = await client.post(
        "/api/v1/keys",
        json={"name": "g", "role": "viewer", "tenant": "globex"},
        headers=auth(platform),
    )
    assert resp.status == 201 and (await resp.json())["tenant"] == "globex"


async def test_rate_limit_with_headers_and_batches_cost_their_size(make_client: MakeClient) -> None:
    # A cell every 10 s: no refill between the calls, however slow the machine.
    client = await make_client(rate_submit_per_s=0.1, rate_submit_burst=5, rate_read_per_s=1000)
    key = await new_key(client, "submitter")
    resp = await client.post(TASKS, json={"type": "noop"}, headers=auth(key))
    assert resp.status == 201
    assert resp.headers["X-RateLimit-Limit"] == "5"
    assert resp.headers["X-RateLimit-Remaining"] == "4"
    assert resp.headers["RateLimit-Policy"] == '"submit-tenant";q=5;w=50, "submit-key";q=5;w=50'
    assert resp.headers["RateLimit"].startswith('"submit-')
    assert ";r=4;t=" in resp.headers["RateLimit"]
    resp = await client.post(f"{TASKS}/batch", json=[{"type": "noop"}] * 3, headers=auth(key))
    assert resp.status == 201 and resp.headers["X-RateLimit-Remaining"] == "1"
    resp = await client.post(f"{TASKS}/batch", json=[{"type": "noop"}] * 2, headers=auth(key))
    error = await expect_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert error["details"]["retry_after_s"] > 0
    # Reads have their own budget.
    assert (await client.get(TASKS, headers=auth(key))).status == 200


async def test_a_key_with_its_own_limit(make_client: MakeClient) -> None:
    client = await make_client(
        rate_tenants='{"default": {"read": {"per_second": 1000, "burst": 1000}}}'
    )
    limited = await new_key(client, "viewer", rate_limits={"read": {"per_second": 0.1, "burst": 2}})
    other = await new_key(client, "viewer")
    statuses = [(await client.get(TASKS, headers=auth(limited))).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (await client.get(TASKS, headers=auth(other))).status == 200


async def test_brute_force_guard(make_client: MakeClient) -> None:
    client = await make_client(auth_failure_limit=3, auth_failure_window_s=30)
    key = await new_key(client)
    for _ in range(3):
        assert (await client.get(TASKS, headers=auth("tq_nope"))).status == 401
    resp = await client.get(TASKS, headers=auth(key))
    await expect_error(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 30
    assert (await client.get("/health/live")).status == 200  # public routes stay open
    metrics = await (await client.get("/metrics")).text()
    assert 'tierq_access_refusals_total{reason="unauthenticated"} 3.0' in metrics
    assert 'tierq_access_refusals_total{reason="guard"} 1.0' in metrics


async def test_load_is_shed_before_submissions_queue_in_memory(make_client: MakeClient) -> None:
    client = await make_client(shed_waiting_submissions=1)
    from tierq.api.routes import ENGINE

    committer = client.app[ENGINE].committer  # type: ignore[index]
    committer._pending.append(([], None))  # one submission waiting for a transaction
    try:
        resp = await client.post(TASKS, json={"type": "noop"})
        await expect_error(resp, 503, "overloaded")
        assert resp.headers["Retry-After"] == "1"
    finally:
        committer._pending.clear()
    assert (await client.post(TASKS, json={"type": "noop"})).status == 201


async def test_tenant_cap_on_requests_in_progress(make_client: MakeClient) -> None:
    client = await make_client(tenant_max_inflight=2)
    task = await submit(client, type="dummy", payload={"sleep_ms": 60_000}, timeout_seconds=120)
    key = await new_key(client)
    waiting = [
        asyncio.create_task(client.get(f"{TASKS}/{task['id']}?wait_seconds=5", headers=auth(key)))
        for _ in range(2)
    ]
    gate = client.app[ACCESS].gate  # type: ignore[index]

    async def in_progress() -> int:
        return gate.inflight("default")

    await poll_until(in_progress, lambda n: n == 2, 5)
    resp = await client.get(TASKS, headers=auth(key))
    await expect_error(resp, 429, "too_many_requests")
    await client.post(f"{TASKS}/{task['id']}/cancel", headers=auth(key))
    for done in waiting:
        assert (await done).status == 200
    assert (await client.get(TASKS, headers=auth(key))).status == 200


async def test_the_audit_log_records_changes_and_refusals(make_client: MakeClient) -> None:
    client = await make_client()
    admin = await new_key(client)
    viewer = await new_key(client, "viewer")
    task = await (
        await client.post(
            TASKS, json={"type": "noop"}, headers={**auth(admin), "X-Request-ID": "req-1"}
        )
    ).json()
    await client.get(TASKS, headers=auth(admin))  # a read: not audited
    await client.post(TASKS, json={"type": "noop"}, headers=auth(viewer))  # 403
    await client.get(TASKS, headers=auth("tq_wrong"))  # 401
    await client.patch(
        "/api/v1/webhooks/" + str(uuid.uuid4()),
        json={"enabled": True},
        headers=auth(admin),
    )  # 404, still audited
    access = client.app[ACCESS]  # type: ignore[index]

    async def rows() -> list[Any]:
        page, _ = await access.audit_store.page(AuditFilter(size=100))
        return page

    deadline = time.monotonic() + 5
    while len(await rows()) < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    found = {(r.entry.action, r.entry.status) for r in await rows()}
    assert ("POST /api/v1/tasks", 201) in found
    assert ("auth.forbidden", 403) in found
    assert ("auth.failed", 401) in found
    assert ("PATCH /api/v1/webhooks/{webhook_id}", 404) in found
    (submitted,) = [r for r in await rows() if r.entry.action == "POST /api/v1/tasks"]
    assert submitted.entry.request_id == "req-1"
    assert submitted.entry.resource_id == task["id"] and submitted.entry.resource_type == "tasks"
    assert submitted.entry.role == "admin" and submitted.entry.tenant == "default"
    assert submitted.entry.source == "127.0.0.1"
    assert await access.audit_store.verify() == (len(await rows()), None)
    written = float(len(await rows()))

    async def scrape() -> str:
        return await (await client.get("/metrics")).text()

    metrics = await poll_until(scrape, lambda t: f"tierq_audit_rows_total {written}" in t, 5)
    assert 'tierq_access_refusals_total{reason="forbidden"} 1.0' in metrics

    # A refused credential belongs to no tenant: only a platform admin sees it.
    platform = await new_key(client, "admin", tenant="*")
    resp = await client.get(
        "/api/v1/audit", params={"action": "auth.failed"}, headers=auth(platform)
    )
    body = await resp.json()
    assert resp.status == 200 and [i["status"] for i in body["items"]] == [401]
    assert body["items"][0]["tenant"] == "-"
    resp = await client.get("/api/v1/audit", params={"action": "auth.failed"}, headers=auth(admin))
    assert (await resp.json())["items"] == []
    resp = await client.get(
        "/api/v1/audit", params={"resource": f"tasks:{task['id']}"}, headers=auth(admin)
    )
    assert [i["request_id"] for i in (await resp.json())["items"]] == ["req-1"]
    await expect_error(
        await client.get("/api/v1/audit", params={"from": "yesterday"}, headers=auth(admin)),
        400,
        "bad_parameter",
    )


async def test_audit_keeps_an_edits_fields_masked(make_client: MakeClient) -> None:
    client = await make_client(redact_fields="token,secret")
    admin = await new_key(client)
    made = await (
        await client.post(
            "/api/v1/schedules",
            json={"name": "s", "every_seconds": 60, "task": {"type": "noop"}},
            headers=auth(admin),
        )
    ).json()
    resp = await client.patch(
        f"/api/v1/schedules/{made['id']}",
        json={"description": "nightly", "task": {"payload": {"Token": "abc", "n": 1}}},
        headers=auth(admin),
    )
    assert resp.status == 200, await resp.text()
    access = client.app[ACCESS]  # type: ignore[index]

    async def patched() -> list[Any]:
        page, _ = await access.audit_store.page(
            AuditFilter(action="PATCH /api/v1/schedules/{schedule_id}")
        )
        return page

    deadline = time.monotonic() + 5
    while not await patched():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    (row,) = await patched()
    assert row.entry.resource_id == made["id"]
    assert orjson.loads(row.entry.changes) == {
        "description": "nightly",
        "task": {"payload": {"Token": "***", "n": 1}},
    }


async def test_audit_changes_are_masked(make_client: MakeClient) -> None:
    from tierq.api.auth.audit import redact, redaction_set

    names = redaction_set(("password", "Token"))
    assert redact({"a": 1, "PASSWORD": "x", "deep": [{"token": "t", "b": 2}]}, names) == {
        "a": 1,
        "PASSWORD": "***",
        "deep": [{"token": "***", "b": 2}],
    }


async def test_a_proxied_caller_is_not_a_loopback_client(make_client: MakeClient) -> None:
    # No key exists: loopback callers need no credential, but a request forwarded by a local
    # proxy comes from loopback whatever its client.
    # By default a loopback proxy is trusted: its X-Forwarded-For names the client.
    trusting = await make_client()
    assert (await trusting.get(TASKS)).status == 200
    assert (await trusting.get(TASKS, headers={"X-Forwarded-For": "127.0.0.1"})).status == 200
    resp = await trusting.get(TASKS, headers={"X-Forwarded-For": "203.0.113.5"})
    await expect_error(resp, 403, "forbidden")
    resp = await trusting.get(TASKS, headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.5"})
    await expect_error(resp, 403, "forbidden")
    # No proxy trusted: a forwarded request's client is unknowable, so it is never served
    # without credentials.
    plain = await make_client(trusted_proxies="")
    assert (await plain.get(TASKS)).status == 200
    resp = await plain.get(TASKS, headers={"X-Forwarded-For": "127.0.0.1"})
    await expect_error(resp, 403, "forbidden")


async def test_behind_a_trusted_proxy_the_guard_and_audit_see_the_client(
    make_client: MakeClient,
) -> None:
    client = await make_client(auth_failure_limit=2, auth_failure_window_s=30)
    key = await new_key(client)
    attacker = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(2):
        resp = await client.get(TASKS, headers={**attacker, "X-API-Key": "tq_nope"})
        assert resp.status == 401
    resp = await client.get(TASKS, headers={**attacker, **auth(key)})
    await expect_error(resp, 429, "rate_limited")
    # A client of its own is not locked out by another's failures, and a client cannot pose
    # as another by writing X-Forwarded-For itself (the proxy appends the real address).
    other = {"X-Forwarded-For": "198.51.100.7, 192.0.2.10"}
    assert (await client.get(TASKS, headers={**other, **auth(key)})).status == 200
    access = client.app[ACCESS]  # type: ignore[index]

    async def sources() -> set[str]:
        page, _ = await access.audit_store.page(AuditFilter(action="auth.failed"))
        return {r.entry.source for r in page}

    assert await poll_until(sources, lambda found: found == {"198.51.100.7"}, 5)

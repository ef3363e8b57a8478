"""Health endpoints, Prometheus metrics, API keys, unknown routes and methods."""

from __future__ import annotations

from tests.api.conftest import Client, MakeClient, expect_error, new_key, submit, wait_status
from tests.helpers import poll_until

TASKS = "/api/v1/tasks"


async def test_health_endpoints(client: Client) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["ready"] is True
    assert body["draining"] is False
    assert body["checks"] == {"record_store": "ok", "dispatch": "ok"}
    assert body["node"] == "test-node"
    assert body["mode"] == "embedded"
    assert body["uptime_seconds"] >= 0

    resp = await client.get("/health/live")
    assert resp.status == 200
    assert await resp.json() == {"status": "alive"}

    resp = await client.get("/health/ready")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready"}


async def test_health_workers_lists_this_node(make_client: MakeClient) -> None:
    client = await make_client(workers=3)
    task = await submit(client, type="dummy", payload={"sleep_ms": 5000})
    await wait_status(client, task["id"], "running", timeout=3)
    resp = await client.get("/health/workers")
    assert resp.status == 200
    body = await resp.json()
    assert body["node"] == "test-node"
    assert body["workers"] == 3
    assert body["busy"] == 1
    assert body["running"] == [task["id"]]
    assert [r["node"] for r in body["replicas"]] == ["test-node"]


async def test_ready_is_503_after_engine_stops(make_client: MakeClient) -> None:
    client = await make_client()
    from tierq.api.routes import ENGINE

    await client.app[ENGINE].stop()
    resp = await client.get("/health/ready")
    assert resp.status == 503
    assert (await resp.json())["status"] == "draining"


async def test_metrics_exposes_prometheus_text(client: Client) -> None:
    task = await submit(client, type="dummy", payload={"sleep_ms": 1})
    await wait_status(client, task["id"], "succeeded")

    # Completions are counted when their batch is flushed, a moment after the state change.
    async def scrape() -> str:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        return await resp.text()

    text = await poll_until(
        scrape, lambda t: 'tierq_task_execution_seconds_count{type="dummy"} 1.0' in t, 3
    )
    assert 'tierq_tasks_submitted_total{type="dummy"} 1.0' in text
    assert "tierq_task_execution_seconds_bucket" in text
    assert 'tierq_task_execution_seconds_count{type="dummy"} 1.0' in text
    assert "tierq_queue_depth{" in text
    assert "Traceback" not in text


async def test_api_keys(client: Client) -> None:
    k1, k2 = await new_key(client), await new_key(client, role="submitter")
    resp = await client.get(TASKS)
    error = await expect_error(resp, 401, "unauthorized")
    assert "X-API-Key" in error["message"]
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="tierq"'
    resp = await client.post(TASKS, json={"type": "noop"})
    await expect_error(resp, 401, "unauthorized")

    # A wrong credential is refused like a missing one (401), never told apart.
    await expect_error(await client.get(TASKS, headers={"X-API-Key": "nope"}), 401, "unauthorized")
    await expect_error(
        await client.get(TASKS, headers={"Authorization": f"Bearer {k1}x"}), 401, "unauthorized"
    )

    resp = await client.get(TASKS, headers={"X-API-Key": k1})
    assert resp.status == 200
    resp = await client.get(TASKS, headers={"Authorization": f"Bearer {k2}"})
    assert resp.status == 200
    resp = await client.post(TASKS, json={"type": "noop"}, headers={"X-API-Key": k2})
    assert resp.status == 201

    resp = await client.get("/health/live")
    assert resp.status == 200
    resp = await client.get("/health/ready")
    assert resp.status == 200


async def test_no_auth_without_keys(client: Client) -> None:
    # No key exists and JWT is off (auth auto): loopback clients need no credential...
    resp = await client.get(TASKS)
    assert resp.status == 200
    # ...but one that is presented must be valid.
    resp = await client.get(TASKS, headers={"X-API-Key": "anything"})
    await expect_error(resp, 401, "unauthorized")


async def test_unknown_route_is_404_json(client: Client) -> None:
    await expect_error(await client.get("/api/v2/tasks"), 404, "not_found")
    await expect_error(await client.get("/nothing/here"), 404, "not_found")


async def test_wrong_method_is_405_json(client: Client) -> None:
    resp = await client.put(TASKS, json={"type": "noop"})
    await expect_error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]
    resp = await client.get(f"{TASKS}/batch")
    # GET /tasks/{id} matches "batch" as an id: a malformed id, not a crash.
    await expect_error(resp, 400, "bad_id")
    resp = await client.delete("/health")
    await expect_error(resp, 405, "method_not_allowed")


async def test_request_id_is_echoed(client: Client) -> None:
    resp = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    # Without one, each request gets a fresh id of its own.
    first = (await client.get("/health/live")).headers["X-Request-ID"]
    second = (await client.get("/health/live")).headers["X-Request-ID"]
    assert first and second and first != second


async def test_edge_layer_answers_errors_with_request_id_and_counts_them(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    k1 = await new_key(client)
    # Refused by auth (the innermost layer) and by a handler: both shaped, both carry the id.
    resp = await client.get(TASKS, headers={"X-Request-ID": "edge-1"})
    await expect_error(resp, 401, "unauthorized")
    assert resp.headers["X-Request-ID"] == "edge-1"
    missing = "00000000-0000-0000-0000-000000000000"
    resp = await client.get(f"{TASKS}/{missing}", headers={"X-API-Key": k1})
    await expect_error(resp, 404, "not_found")
    assert resp.headers["X-Request-ID"]
    for _ in range(2):
        resp = await client.get(TASKS, headers={"X-API-Key": k1})
        assert resp.status == 200
    text = await (await client.get("/metrics")).text()
    assert 'tierq_http_requests_total{route="/api/v1/tasks",status="401"} 1.0' in text
    assert 'tierq_http_requests_total{route="/api/v1/tasks",status="200"} 2.0' in text
    assert 'tierq_http_requests_total{route="/api/v1/tasks/{task_id}",status="404"} 1.0' in text
    assert 'tierq_http_request_seconds_count{route="/api/v1/tasks"} 3.0' in text


async def test_statistics_answers_503_when_a_tier_is_unavailable(client: Client) -> None:
    from tierq.api.routes import ENGINE

    engine = client.app[ENGINE]  # type: ignore[union-attr]
    resp = await client.get(f"{TASKS}/statistics")
    assert resp.status == 200
    await engine.store.close()  # the record tier goes away under a running engine
    resp = await client.get(f"{TASKS}/statistics")
    await expect_error(resp, 503, "unavailable")
    assert resp.headers["Retry-After"]

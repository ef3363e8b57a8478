"""The operator's routes: task metrics from the per-minute rollups (before and after they are
written to the record tier, never counted twice), the queue health verdict, and running the
recovery passes."""

from __future__ import annotations

import itertools
from typing import Any

from tests.api.conftest import Client, MakeClient, auth, new_key, submit
from tests.helpers import wait_for
from tierq.api.routes import ENGINE


async def _wait_ended(client: Client, ids: list[str]) -> None:
    async def ended() -> bool:
        for task_id in ids:
            body = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
            if body["status"] not in ("succeeded", "failed"):
                return False
        return True

    await wait_for(ended, timeout=10)


async def _metrics(client: Client, path: str, **headers: str) -> dict[str, Any]:
    resp = await client.get(path, headers=headers)
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def test_metrics_count_outcomes_once_before_and_after_the_write(client: Client) -> None:
    ok = [(await submit(client, type="dummy", payload={"sleep_ms": 20}))["id"] for _ in range(4)]
    bad = await submit(client, type="dummy", payload={"fail_always": True}, max_retries=0)
    await _wait_ended(client, [*ok, bad["id"]])
    engine = client.app[ENGINE]  # type: ignore[index]
    await engine.flusher.run_once()

    async def summary() -> dict[str, Any]:
        body = await _metrics(client, "/api/v1/tasks/metrics?bucket_seconds=60")
        return body["summary"]  # type: ignore[no-any-return]

    await wait_for(lambda: _ended_count(summary, 5), timeout=10)
    before = await summary()
    assert (before["submitted"], before["succeeded"], before["failed"]) == (5, 4, 1)
    assert before["failure_rate"] == 0.2
    assert 0.02 <= before["run_p50_seconds"] <= 0.05  # the bucket holding 20 ms
    assert before["wait_p99_seconds"] is not None
    # Written to the record tier (as at a minute's end, or at shutdown): the same figures.
    await engine.reports.rollups.drain()
    after = await summary()
    counted = [k for k in before if k not in ("end", "throughput_per_s")]  # both run to now
    assert {k: after[k] for k in counted} == {k: before[k] for k in counted}
    hours = await _metrics(client, "/health/metrics?hours=1&bucket_seconds=600")
    # From the start of the minute an hour ago to now: six buckets and the one now runs in.
    buckets = hours["buckets"]
    assert len(buckets) == 7
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(buckets))
    assert sum(b["succeeded"] for b in hours["buckets"]) == 4
    assert hours["summary"]["succeeded"] == 4


async def _ended_count(summary: Any, n: int) -> bool:
    body = await summary()
    return bool(body["succeeded"] + body["failed"] == n)


async def test_metrics_refuse_bad_windows_with_the_parameter(client: Client) -> None:
    for path, parameter in (
        ("/health/metrics?hours=0", "hours"),
        ("/health/metrics?hours=abc", "hours"),
        ("/health/metrics?hours=1&bucket_seconds=61", "bucket_seconds"),
        ("/health/metrics?hours=100&bucket_seconds=60", "bucket_seconds"),
        ("/api/v1/tasks/metrics?from_time=2000-01-01T00:00:00Z", "from_time"),
        ("/api/v1/tasks/metrics?from_time=yesterday", "from_time"),
    ):
        resp = await client.get(path)
        body = await resp.json()
        assert resp.status == 400, (path, body)
        assert body["error"]["details"]["parameter"] == parameter, path


async def test_a_tenant_sees_its_own_outcomes(make_client: MakeClient) -> None:
    client = await make_client()
    admin = await new_key(client)
    platform = await new_key(client, "admin", "*")
    acme = await new_key(client, "operator", "acme")
    mine = await client.post("/api/v1/tasks", json={"type": "noop"}, headers=auth(acme))
    theirs = await client.post("/api/v1/tasks", json={"type": "noop"}, headers=auth(admin))
    ids = [(await mine.json())["id"], (await theirs.json())["id"]]
    await wait_for(lambda: _all_done(client, ids, platform), timeout=10)
    body = await _metrics(client, "/api/v1/tasks/metrics", **auth(acme))
    assert body["summary"]["submitted"] == 1
    default = await _metrics(client, "/api/v1/tasks/metrics", **auth(admin))
    assert default["summary"]["submitted"] == 1
    everyone = await _metrics(client, "/api/v1/tasks/metrics", **auth(platform))
    assert everyone["summary"]["submitted"] == 2


async def _all_done(client: Client, ids: list[str], key: str) -> bool:
    for task_id in ids:
        body = await (await client.get(f"/api/v1/tasks/{task_id}", headers=auth(key))).json()
        if body["status"] != "succeeded":
            return False
    return True


async def test_health_verdict_names_its_reasons(client: Client) -> None:
    await submit(client, type="noop", queue="mail")
    body = await _metrics(client, "/api/v1/tasks/health")
    assert (body["status"], body["reasons"], body["open_breakers"]) == ("healthy", [], [])
    assert "mail" in [q["name"] for q in body["queues"]]
    assert (await client.post("/api/v1/breakers/http:example.com/open")).status == 200
    body = await _metrics(client, "/api/v1/tasks/health")
    assert body["status"] == "degraded"
    assert body["open_breakers"] == ["http:example.com"]
    assert body["reasons"] == ["breaker http:example.com is open"]


async def test_recovery_reports_and_is_an_operators_call(client: Client) -> None:
    resp = await client.post("/health/recovery")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["mode"] == "embedded" and body["rescued_leases"] == 0
    viewer = await new_key(client, "viewer")
    refused = await client.post("/health/recovery", headers=auth(viewer))
    assert refused.status == 403

"""Inputs that used to end in a 500 (or be stored and then break every read), and the limits
that keep them out: query parsing, payloads orjson cannot decode, validators that raise,
run_at bounds, NUL characters, OFFSET depth, and which paths skip authentication."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.api.conftest import Client, expect_error, new_key, statistics, submit
from tierq.api.routes import ENGINE
from tierq.api.schemas import iso
from tierq.engine.handlers.base import TaskContext

TASKS = "/api/v1/tasks"
BATCH = "/api/v1/tasks/batch"
# orjson reads integers beyond 64 bits as floats; beyond a double they do not decode at all.
BIG = b"9" * 400


async def post_raw(client: Client, url: str, body: bytes) -> Any:
    return await client.post(url, data=body, headers={"Content-Type": "application/json"})


async def assert_nothing_stored(client: Client) -> None:
    assert (await statistics(client))["total"] == 0


@pytest.mark.parametrize("raw", ["--1", "²", "-²", "1" * 5000, "+-3", " 7 x"])
async def test_odd_priority_parameters_are_400(client: Client, raw: str) -> None:
    resp = await client.get(TASKS, params={"priority": raw})
    error = await expect_error(resp, 400, "bad_parameter")
    assert error["details"] == {"parameter": "priority"}


async def test_priority_parameter_still_accepts_integers_and_names(client: Client) -> None:
    await submit(client, type="noop", priority=-7, delay_seconds=60)
    for raw in ("-7", " -7 "):  # surrounding blanks are not part of the value
        resp = await client.get(TASKS, params={"priority": raw})
        body = await resp.json()
        assert resp.status == 200, body
        assert [t["priority"] for t in body["items"]] == [-7]
    resp = await client.get(TASKS, params={"priority": "high"})
    assert resp.status == 200 and (await resp.json())["items"] == []


async def test_payload_number_orjson_cannot_decode_is_422(client: Client) -> None:
    for task_type, number in (("noop", BIG), ("dummy", BIG), ("noop", b"-1e400")):
        body = b'{"type": "%s", "payload": {"n": %s}}' % (task_type.encode(), number)
        error = await expect_error(await post_raw(client, TASKS, body), 422, "validation_error")
        assert error["details"]["path"] == "$.payload", error
    batch = b'[{"type": "noop"}, {"type": "noop", "payload": [%s]}]' % BIG
    error = await expect_error(await post_raw(client, BATCH, batch), 422, "validation_error")
    assert error["details"] == {"path": "$[1].payload", "index": 1, "field": "payload"}
    await assert_nothing_stored(client)


async def test_validator_raising_anything_is_422_with_its_message(client: Client) -> None:
    def validate(payload: Any) -> None:
        if payload.get("boom"):
            raise RuntimeError("boom is not supported")
        payload["missing"]  # KeyError, a bug in the validator: still the payload's 422

    async def run(ctx: TaskContext) -> None:
        return None

    client.server.app[ENGINE].registry.register("picky", run, validate=validate)
    resp = await client.post(TASKS, json={"type": "picky", "payload": {"boom": True}})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {"path": "$.payload", "field": "payload"}
    assert error["message"] == "boom is not supported"
    resp = await client.post(BATCH, json=[{"type": "noop"}, {"type": "picky", "payload": {}}])
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["path"] == "$[1].payload"
    assert "missing" in error["message"]
    await assert_nothing_stored(client)


@pytest.mark.parametrize(
    "run_at",
    [
        "9999-12-31T23:59:59-05:00",  # after 9999-12-31 in UTC: iso() could not show it
        (datetime.now(UTC) + timedelta(days=400)).isoformat(),
    ],
)
async def test_run_at_is_bounded(client: Client, run_at: str) -> None:
    resp = await client.post(TASKS, json={"type": "noop", "run_at": run_at})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {"path": "$.run_at", "field": "run_at"}
    resp = await client.post(BATCH, json=[{"type": "noop"}, {"type": "noop", "run_at": run_at}])
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["path"] == "$[1].run_at"
    await assert_nothing_stored(client)


async def test_run_at_within_a_year_is_accepted(client: Client) -> None:
    when = datetime.now(UTC) + timedelta(days=300)
    task = await submit(client, type="noop", run_at=when.isoformat())
    assert task["status"] == "scheduled"
    assert task["run_at"].startswith(when.strftime("%Y-%m-%dT%H:%M"))


def test_iso_never_raises() -> None:
    assert iso(1e300) == "9999-12-31T23:59:59.000Z"
    assert iso(-1e300) == "0001-01-01T00:00:00.000Z"
    assert iso(float("inf")) == "9999-12-31T23:59:59.000Z"
    assert iso(float("nan")) is None
    assert iso(0.25) == "1970-01-01T00:00:00.250Z"


@pytest.mark.parametrize("field", ["name", "description", "idempotency_key"])
async def test_nul_in_text_fields_is_422(client: Client, field: str) -> None:
    resp = await client.post(TASKS, json={"type": "noop", field: "a\x00b"})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {"path": f"$.{field}", "field": field}
    assert "NUL" in error["message"]
    resp = await client.post(BATCH, json=[{"type": "noop"}, {"type": "noop", field: "\x00"}])
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["path"] == f"$[1].{field}"
    await assert_nothing_stored(client)


async def test_deep_offset_paging_is_refused_pointing_to_keyset(client: Client) -> None:
    for params in ({"page": "101", "size": "1000"}, {"page": "1000000", "size": "1"}):
        resp = await client.get(TASKS, params=params)
        error = await expect_error(resp, 400, "bad_parameter")
        assert error["details"] == {"parameter": "page"}
        assert "after" in error["message"] and "next_after" in error["message"]
    resp = await client.get(TASKS, params={"page": "100", "size": "1000"})
    assert resp.status == 200
    assert (await resp.json())["page"] == 100


async def test_open_paths_are_exact(client: Client) -> None:
    await new_key(client)
    for path in ("/health", "/health/live", "/health/ready", "/health/workers", "/metrics"):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
    # Public is a route's permission in the route table, never a path prefix: a path near an
    # open one is either another route (credentials needed) or no route at all (404; before
    # the route table these were 401, as every unknown path was).
    await expect_error(await client.get("/api/v1/tasks"), 401, "unauthorized")
    for path in ("/healthz", "/health/other", "/metrics-admin", "/metricsx/../x"):
        await expect_error(await client.get(path), 404, "not_found")
    assert orjson.loads(await (await client.get("/health/live")).read())["status"] == "alive"

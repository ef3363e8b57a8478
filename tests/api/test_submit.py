"""POST /api/v1/tasks and /api/v1/tasks/batch: shapes, validation, limits, idempotency."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tests.api.conftest import (
    Client,
    MakeClient,
    expect_error,
    statistics,
    submit,
    submit_batch,
)

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
TASKS = "/api/v1/tasks"
BATCH = "/api/v1/tasks/batch"


async def assert_nothing_stored(client: Client) -> None:
    stats = await statistics(client)
    assert stats["total"] == 0, stats
    resp = await client.get(TASKS)
    assert (await resp.json())["items"] == []


async def test_submit_one_returns_201_with_task(client: Client) -> None:
    resp = await client.post(
        TASKS,
        json={
            "type": "noop",
            "queue": "emails",
            "priority": "HIGH",
            "name": "n1",
            "description": "d1",
            "max_retries": 2,
            "timeout_seconds": 7.5,
            "payload": {"x": [1, 2]},
        },
    )
    assert resp.status == 201
    assert resp.content_type == "application/json"
    task = await resp.json()
    assert all(SNAKE.match(key) for key in task), list(task)
    parsed = uuid.UUID(task["id"])
    assert str(parsed) == task["id"]
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert task["status"] in ("queued", "running", "succeeded")
    assert task["type"] == "noop"
    assert task["queue"] == "emails"
    assert task["priority"] == 10
    assert task["name"] == "n1"
    assert task["description"] == "d1"
    assert task["max_retries"] == 2
    assert task["timeout_seconds"] == 7.5
    assert task["payload"] == {"x": [1, 2]}
    assert task["depends_on"] == []
    for key in ("created_at", "updated_at", "run_at"):
        assert task[key].endswith("Z"), task[key]


async def test_ids_are_time_ordered(client: Client) -> None:
    first = await submit(client, type="noop")
    second = await submit(client, type="noop")
    assert first["id"] < second["id"]


async def test_batch_returns_ids_count_existing(client: Client) -> None:
    body = await submit_batch(
        client, [{"type": "noop"}, {"type": "dummy", "payload": {}}, {"type": "noop"}]
    )
    assert set(body) == {"ids", "count", "existing"}
    assert body["count"] == 3
    assert body["existing"] == []
    assert len(set(body["ids"])) == 3
    assert all(uuid.UUID(i).version == 7 for i in body["ids"])
    assert (await statistics(client))["total"] == 3


async def test_batch_with_one_invalid_task_stores_nothing(client: Client) -> None:
    resp = await client.post(
        BATCH, json=[{"type": "noop"}, {"type": "noop", "priority": "URGENT"}, {"type": "noop"}]
    )
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {"path": "$[1].priority", "index": 1, "field": "priority"}
    await assert_nothing_stored(client)


async def test_batch_decoder_error_carries_index_and_field(client: Client) -> None:
    resp = await client.post(BATCH, json=[{"type": "noop"}, {"type": "noop"}, {"type": 5}])
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["index"] == 2
    assert error["details"]["field"] == "type"
    assert error["details"]["path"] == "$[2].type"
    await assert_nothing_stored(client)


async def test_unknown_field_is_rejected(client: Client) -> None:
    resp = await client.post(TASKS, json={"type": "noop", "colour": "red"})
    error = await expect_error(resp, 422, "validation_error")
    assert "colour" in error["message"] and error["details"]["path"] == "$.colour"
    resp = await client.post(BATCH, json=[{"type": "noop"}, {"type": "noop", "colour": "red"}])
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["index"] == 1 and error["details"]["path"] == "$[1].colour"
    assert "colour" in error["message"]
    await assert_nothing_stored(client)


async def test_priority_names_and_integers(client: Client) -> None:
    cases: list[tuple[Any, int]] = [
        ("HIGH", 10),
        ("MEDIUM", 5),
        ("LOW", 0),
        ("low", 0),
        (42, 42),
        (-1000, -1000),
        (1000, 1000),
    ]
    for given, expected in cases:
        task = await submit(client, type="noop", priority=given)
        assert task["priority"] == expected, given
    default = await submit(client, type="noop")
    assert default["priority"] == 5


async def test_priority_out_of_range_or_unknown_is_422(client: Client) -> None:
    for bad in (1001, -1001, "URGENT", 1.5, None):
        resp = await client.post(TASKS, json={"type": "noop", "priority": bad})
        error = await expect_error(resp, 422, "validation_error")
        assert error["details"]["field"] == "priority", (bad, error)
        assert error["details"]["path"] == "$.priority"
    await assert_nothing_stored(client)


async def test_run_at_and_delay_seconds_schedule_the_task(client: Client) -> None:
    when = datetime.now(UTC) + timedelta(minutes=10)
    task = await submit(client, type="noop", run_at=when.isoformat())
    assert task["status"] == "scheduled"
    stored_run_at = datetime.fromisoformat(task["run_at"].replace("Z", "+00:00"))
    assert abs((stored_run_at - when).total_seconds()) < 0.01
    delayed = await submit(client, type="noop", delay_seconds=60)
    assert delayed["status"] == "scheduled"
    created = datetime.fromisoformat(delayed["created_at"].replace("Z", "+00:00"))
    run_at = datetime.fromisoformat(delayed["run_at"].replace("Z", "+00:00"))
    assert abs((run_at - created).total_seconds() - 60) < 0.01


async def test_run_at_with_delay_seconds_is_422(client: Client) -> None:
    when = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    resp = await client.post(TASKS, json={"type": "noop", "run_at": when, "delay_seconds": 5})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["field"] == "run_at"
    resp = await client.post(TASKS, json={"type": "noop", "run_at": "next tuesday"})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["field"] == "run_at"
    resp = await client.post(TASKS, json={"type": "noop", "delay_seconds": -1})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["field"] == "delay_seconds"
    await assert_nothing_stored(client)


async def test_unknown_type_is_422_on_type(client: Client) -> None:
    resp = await client.post(BATCH, json=[{"type": "noop"}, {"type": "no_such_type"}])
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {"path": "$[1].type", "index": 1, "field": "type"}
    assert "no_such_type" in error["message"]
    await assert_nothing_stored(client)


async def test_dummy_payload_is_validated_with_its_path(client: Client) -> None:
    resp = await client.post(TASKS, json={"type": "dummy", "payload": {"sleep_ms": -5}})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {"path": "$.payload.sleep_ms", "field": "payload.sleep_ms"}
    resp = await client.post(
        BATCH, json=[{"type": "dummy"}, {"type": "dummy", "payload": {"sleepms": 1}}]
    )
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"] == {
        "path": "$[1].payload.sleepms",
        "index": 1,
        "field": "payload.sleepms",
    }
    resp = await client.post(TASKS, json={"type": "dummy", "payload": [1]})
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["field"] == "payload"
    await assert_nothing_stored(client)


async def test_empty_batch_is_422(client: Client) -> None:
    resp = await client.post(BATCH, json=[])
    error = await expect_error(resp, 422, "validation_error")
    assert error["details"]["path"] == "$"


async def test_batch_over_max_batch_is_422(make_client: MakeClient) -> None:
    client = await make_client(max_batch=3)
    resp = await client.post(BATCH, json=[{"type": "noop"}] * 4)
    error = await expect_error(resp, 422, "validation_error")
    assert "3" in error["message"]
    await assert_nothing_stored(client)
    ok = await submit_batch(client, [{"type": "noop"}] * 3)
    assert ok["count"] == 3


async def test_body_over_max_body_bytes_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_body_bytes=1024)
    big = orjson.dumps([{"type": "noop", "description": "x" * 500}] * 4)
    assert len(big) > 1024
    resp = await client.post(BATCH, data=big, headers={"Content-Type": "application/json"})
    await expect_error(resp, 413, "payload_too_large")
    await assert_nothing_stored(client)


async def test_wrong_content_type_is_415(client: Client) -> None:
    resp = await client.post(
        TASKS, data=b'{"type": "noop"}', headers={"Content-Type": "text/plain"}
    )
    error = await expect_error(resp, 415, "unsupported_media_type")
    assert error["details"]["content_type"] == "text/plain"
    resp = await client.post(BATCH, data={"type": "noop"})  # form-encoded
    await expect_error(resp, 415, "unsupported_media_type")
    await assert_nothing_stored(client)


async def test_malformed_json_is_400(client: Client) -> None:
    for body in (b'{"type": "noop"', b"not json", b'[{"type": "noop"},]'):
        resp = await client.post(
            BATCH if body.startswith(b"[") else TASKS,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        await expect_error(resp, 400, "malformed_json")
    await assert_nothing_stored(client)


async def test_empty_body_is_400(client: Client) -> None:
    for path in (TASKS, BATCH):
        resp = await client.post(path, data=b"", headers={"Content-Type": "application/json"})
        await expect_error(resp, 400, "malformed_json")


async def test_single_submit_of_an_array_is_422(client: Client) -> None:
    resp = await client.post(TASKS, json=[{"type": "noop"}])
    await expect_error(resp, 422, "validation_error")
    await assert_nothing_stored(client)


async def test_idempotency_key_single_returns_first_with_200(client: Client) -> None:
    first = await submit(client, type="noop", idempotency_key="order-1", delay_seconds=60)
    resp = await client.post(
        TASKS, json={"type": "noop", "idempotency_key": "order-1", "priority": "HIGH"}
    )
    assert resp.status == 200
    again = await resp.json()
    assert again["id"] == first["id"]
    assert again["priority"] == first["priority"] == 5
    assert again["status"] == "scheduled"
    assert (await statistics(client))["total"] == 1


async def test_idempotency_key_batch_lists_existing(client: Client) -> None:
    first = await submit(client, type="noop", idempotency_key="k-a", delay_seconds=60)
    body = await submit_batch(
        client,
        [
            {"type": "noop", "delay_seconds": 60},
            {"type": "noop", "idempotency_key": "k-a"},
            {"type": "noop", "idempotency_key": "k-b", "delay_seconds": 60},
        ],
    )
    assert body["count"] == 3
    assert body["existing"] == [1]
    assert body["ids"][1] == first["id"]
    assert len(set(body["ids"])) == 3
    assert (await statistics(client))["total"] == 3


async def test_duplicate_keys_within_one_batch(client: Client) -> None:
    body = await submit_batch(
        client,
        [
            {"type": "noop", "idempotency_key": "dup", "delay_seconds": 60},
            {"type": "noop", "idempotency_key": "dup", "delay_seconds": 60},
            {"type": "noop", "idempotency_key": "other", "delay_seconds": 60},
        ],
    )
    assert body["ids"][0] == body["ids"][1]
    assert body["existing"] == [1]
    assert body["ids"][2] != body["ids"][0]
    assert (await statistics(client))["total"] == 2


async def test_json_content_type_with_charset_is_accepted(client: Client) -> None:
    resp = await client.post(
        TASKS, data=b'{"type": "noop"}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert resp.status == 201, await resp.text()


async def test_run_at_offset_and_naive_times(client: Client) -> None:
    # run_at is bounded to 366 days ahead: use a date within that, in the future.
    day = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    offset = await submit(client, type="noop", run_at=f"{day}T12:00:00+02:00")
    assert offset["run_at"] == f"{day}T10:00:00.000Z"
    naive = await submit(client, type="noop", run_at=f"{day}T12:00:00")
    assert naive["run_at"] == f"{day}T12:00:00.000Z"  # naive means UTC
    past = await submit(client, type="noop", run_at="2001-01-01T00:00:00Z")
    assert past["status"] in ("queued", "running", "succeeded")  # due now, not scheduled
    assert past["run_at"] == past["created_at"]

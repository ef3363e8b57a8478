"""Structured logs: one JSON object per line with the line's context (the request, the task
and attempt a worker runs, the tenant), set where each is known and read when a line is
written."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.api.conftest import BASE_SETTINGS
from tests.helpers import make_task, submit, wait_for
from tierq.api.app import build_engine, create_app
from tierq.api.routes import ENGINE
from tierq.config import ConfigError, from_mapping
from tierq.engine.handlers import close_registry
from tierq.engine.handlers.base import Handler, TaskContext
from tierq.logs import ATTEMPT, REQUEST_ID, TASK_ID, JsonFormatter, set_node
from tierq.metrics import Metrics


class Lines(logging.Handler):
    """Formats each record as it is emitted (in its context), as the server's handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.docs: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.docs.append(orjson.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_line_is_one_object_with_its_context(lines: Lines) -> None:
    set_node("node-7")
    log = logging.getLogger("tierq.test")
    log.info("plain %s", "line")
    token = REQUEST_ID.set("req-1"), TASK_ID.set("t-1"), ATTEMPT.set(2)
    try:
        log.warning("in context")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        REQUEST_ID.reset(token[0])
        TASK_ID.reset(token[1])
        ATTEMPT.reset(token[2])
    plain, inside, failed = lines.docs[-3:]
    assert set(plain) == {"time", "level", "logger", "message", "node"}
    assert (plain["message"], plain["level"], plain["node"]) == ("plain line", "INFO", "node-7")
    assert (inside["request_id"], inside["task_id"], inside["attempt"]) == ("req-1", "t-1", 2)
    assert "ValueError: boom" in failed["exception"]


def test_bad_log_settings_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="TIERQ_LOG_FORMAT"):
        from_mapping({"log_format": "xml"})
    with pytest.raises(ConfigError, match="TIERQ_LOG_LEVELS"):
        from_mapping({"log_levels": "tierq.flow=LOUD"})
    assert from_mapping({"log_levels": "tierq.flow=debug, aiohttp=WARNING"})


async def test_a_handlers_lines_name_its_task_and_attempt(tmp_path: Path, lines: Lines) -> None:
    settings = from_mapping(
        {**BASE_SETTINGS, "database_url": "sqlite:///" + str(tmp_path / "t.db")}
    )
    engine = build_engine(settings, Metrics())

    async def chatty(ctx: TaskContext) -> Any:
        logging.getLogger("myapp").info("working")
        return None

    engine.registry.add(Handler(name="chatty", run=chatty))
    await engine.start()
    try:
        (task_id,) = await submit(engine, make_task(engine, type="chatty"))
        await wait_for(lambda: any(d["message"] == "working" for d in lines.docs), timeout=5)
    finally:
        await engine.stop()
        await close_registry(engine.registry)
    (line,) = [d for d in lines.docs if d["message"] == "working"]
    assert (line["task_id"], line["attempt"], line["node"]) == (task_id, 1, "test-node")
    assert "request_id" not in line  # submitted by no request


async def test_an_attempts_lines_name_the_request_that_submitted_it(
    tmp_path: Path, lines: Lines
) -> None:
    settings = from_mapping(
        {**BASE_SETTINGS, "database_url": "sqlite:///" + str(tmp_path / "t.db")}
    )
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        engine = client.app[ENGINE]  # type: ignore[index]

        async def chatty(ctx: TaskContext) -> Any:
            logging.getLogger("myapp").info("working for %s", ctx.request_id)
            return None

        engine.registry.add(Handler(name="chatty", run=chatty))
        resp = await client.post(
            "/api/v1/tasks", json={"type": "chatty"}, headers={"X-Request-ID": "req-9"}
        )
        assert resp.status == 201
        task_id = (await resp.json())["id"]
        await wait_for(lambda: any(d["message"] == "working for req-9" for d in lines.docs), 5)
    finally:
        await client.close()
    (line,) = [d for d in lines.docs if d["message"] == "working for req-9"]
    assert line["request_id"] == "req-9"
    assert line["task_id"] == task_id


async def test_a_requests_lines_name_it_and_its_tenant(tmp_path: Path, lines: Lines) -> None:
    settings = from_mapping(
        {**BASE_SETTINGS, "database_url": "sqlite:///" + str(tmp_path / "t.db")}
    )
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        resp = await client.post("/api/v1/queues/mail/pause", headers={"X-Request-ID": "req-xyz"})
        assert resp.status == 200
    finally:
        await client.close()
    (line,) = [d for d in lines.docs if d["message"] == "queue mail paused"]
    assert (line["request_id"], line["tenant"]) == ("req-xyz", "*")


async def test_a_payloads_secrets_reach_no_log_line(tmp_path: Path, lines: Lines) -> None:
    """Every line written while tasks carrying a secret are submitted, fail, are retried and
    are dead-lettered, at DEBUG: the secret is in none of them."""
    settings = from_mapping(
        {**BASE_SETTINGS, "database_url": "sqlite:///" + str(tmp_path / "t.db")}
    )
    engine = build_engine(settings, Metrics())

    async def refuses(ctx: TaskContext) -> Any:
        assert ctx.payload["password"]  # it reads the secret, and fails
        raise RuntimeError("the target said no")

    engine.registry.add(Handler(name="login", run=refuses))
    logging.getLogger().setLevel(logging.DEBUG)
    await engine.start()
    try:
        secret = {"user": "ops", "password": "hunter2-secret"}
        tasks = [make_task(engine, type="login", payload=secret, max_retries=1) for _ in range(3)]
        ids = await submit(engine, *tasks)
        for task_id in ids:
            await wait_for(lambda i=task_id: _failed(engine, i), timeout=10)
    finally:
        await engine.stop()
        await close_registry(engine.registry)
    assert len(lines.docs) > 0
    assert not [d for d in lines.docs if "hunter2" in orjson.dumps(d).decode()]


async def _failed(engine: Any, task_id: str) -> bool:
    return (await engine.get(task_id)).state.value == "failed"

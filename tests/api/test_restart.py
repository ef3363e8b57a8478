"""A restart on the same record tier: accepted tasks survive, interrupted ones run again."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from tests.api.conftest import BASE_SETTINGS, get_task, submit, wait_status
from tierq.api.app import create_app
from tierq.config import from_mapping


async def start(db: Path) -> TestClient:  # type: ignore[type-arg]
    settings = from_mapping({**BASE_SETTINGS, "database_url": "sqlite:///" + str(db)})
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


async def test_tasks_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    first = await start(db)
    try:
        delayed = await submit(first, type="noop", delay_seconds=60, name="later")
        running = await submit(first, type="dummy", payload={"sleep_ms": 10_000, "result": 1})
        await wait_status(first, running["id"], "running")
        done = await submit(first, type="noop")
        await wait_status(first, done["id"], "succeeded")
    finally:
        await first.close()  # grace 0: the running attempt is interrupted and handed back

    second = await start(db)
    try:
        assert (await get_task(second, delayed["id"]))["status"] == "scheduled"
        assert (await get_task(second, delayed["id"]))["name"] == "later"
        assert (await get_task(second, done["id"]))["status"] == "succeeded"
        again = await wait_status(second, running["id"], "running", timeout=4)
        assert again["attempt"] == 2
        resp = await second.get(f"/api/v1/tasks/{running['id']}/executions")
        outcomes = [e["outcome"] for e in (await resp.json())["items"]]
        assert outcomes[0] == "interrupted"
        assert outcomes[1] is None
    finally:
        await second.close()

"""An outside worker's report lands on a replica that does not run the attempt: it is
announced through Redis and finishes the attempt where it waits."""

from __future__ import annotations

import pytest

from tests.distributed.test_http import Client, call, clients, wait_status  # noqa: F401
from tests.helpers import poll_until

pytestmark = pytest.mark.distributed


async def test_a_report_reaches_the_replica_running_the_attempt(
    clients: tuple[Client, Client],  # noqa: F811
) -> None:
    a, b = clients
    task = await call(a, "POST", "/api/v1/tasks", 201, json={"type": "external"})
    running = await poll_until(
        lambda: call(b, "GET", f"/api/v1/tasks/{task['id']}", 200),
        lambda t: t["status"] == "running",
        timeout=10,
    )
    runner = running["lease_owner"]
    assert runner in ("a", "b")
    other = b if runner == "a" else a
    done = await call(
        other,
        "PUT",
        f"/api/v1/tasks/{task['id']}/status?status=COMPLETED&attempt=1",
        200,
        json={"result": {"ok": True}},
    )
    assert (done["status"], done["result"]) == ("succeeded", {"ok": True})
    assert done["lease_owner"] is None
    ended = await wait_status(a, task["id"], "succeeded")
    assert ended["attempt"] == 1

"""With one worker held busy, waiting tasks start in priority order."""

from __future__ import annotations

from tests.api.conftest import Client, MakeClient, submit, wait_status


async def test_high_medium_low_start_in_priority_order(make_client: MakeClient) -> None:
    client: Client = await make_client(workers=1)
    blocker = await submit(client, type="dummy", payload={"sleep_ms": 300})
    await wait_status(client, blocker["id"], "running", timeout=3)
    # Each sleeps a little so start times differ by more than the millisecond resolution.
    slow = {"sleep_ms": 20}
    low = await submit(client, type="dummy", payload=slow, priority="LOW")
    high = await submit(client, type="dummy", payload=slow, priority="HIGH")
    medium = await submit(client, type="dummy", payload=slow, priority="MEDIUM")
    # Nothing else may run while the only worker is busy.
    for task in (low, high, medium):
        assert (await wait_status(client, task["id"], "queued"))["started_at"] is None
    done = {
        name: await wait_status(client, task["id"], "succeeded", timeout=4)
        for name, task in (("low", low), ("high", high), ("medium", medium))
    }
    blocker_done = await wait_status(client, blocker["id"], "succeeded")
    assert blocker_done["finished_at"] <= done["high"]["started_at"]
    assert done["high"]["started_at"] < done["medium"]["started_at"] < done["low"]["started_at"]


async def test_priority_order_holds_for_tasks_paged_in_from_the_record_tier(
    make_client: MakeClient,
) -> None:
    # memory_limit=1: the running blocker fills the memory tier, so the next tasks wait in the
    # record tier and are paged in; paging must keep priority order too.
    client: Client = await make_client(workers=1, memory_limit=1)
    blocker = await submit(client, type="dummy", payload={"sleep_ms": 300})
    await wait_status(client, blocker["id"], "running", timeout=3)
    slow = {"sleep_ms": 20}
    low = await submit(client, type="dummy", payload=slow, priority="LOW")
    high = await submit(client, type="dummy", payload=slow, priority="HIGH")
    medium = await submit(client, type="dummy", payload=slow, priority=5)
    starts = {
        name: (await wait_status(client, task["id"], "succeeded", timeout=5))["started_at"]
        for name, task in (("low", low), ("high", high), ("medium", medium))
    }
    assert starts["high"] < starts["medium"] < starts["low"]

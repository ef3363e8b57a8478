"""The service loop's contract: stop() stops it and waits for it, however it was started."""

from __future__ import annotations

import asyncio

from tests.helpers import wait_for
from tierq.engine.service import Service


class Ticker(Service):
    name = "ticker"

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        self.drained = False

    def next_wait(self) -> float | None:
        return 0.001

    async def run_once(self) -> None:
        self.steps += 1
        await asyncio.sleep(0.005)  # a step under way when stop() is called

    async def drain(self) -> None:
        self.drained = True


async def test_stop_waits_for_a_service_it_started() -> None:
    ticker = Ticker()
    await ticker.start()
    await wait_for(lambda: ticker.steps >= 2, timeout=5)
    await ticker.stop()
    assert ticker.drained
    steps = ticker.steps
    # Nothing to wait on for "no more steps": give a loop that still ran time for two.
    await asyncio.sleep(0.02)
    assert ticker.steps == steps


async def test_stop_stops_a_service_run_inside_a_task_group() -> None:
    # The engine runs its services this way; stop() used to return at once there, leaving
    # the loop running (a test that stopped the heartbeat this way was flaky because of it).
    ticker = Ticker()
    async with asyncio.TaskGroup() as group:
        running = group.create_task(ticker.run())
        await wait_for(lambda: ticker.steps >= 2, timeout=5)
        await ticker.stop()
        assert running.done() and ticker.drained
        steps = ticker.steps
        await asyncio.sleep(0.02)
        assert ticker.steps == steps

"""How late the event loop runs a timer: the one number that says whether small requests
are waiting behind batch work (everything in a replica shares one loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tierq.engine.service import Service


class LoopLagMonitor(Service):
    """Sleeps ``interval_s`` and observes how much later than asked it woke up."""

    name = "loop-lag"

    def __init__(self, observe: Callable[[float], None], interval_s: float = 0.05) -> None:
        super().__init__()
        self._observe = observe
        self.interval_s = interval_s
        self.last_lag = 0.0

    def next_wait(self) -> float | None:
        return 0.0  # run_once does the waiting: its sleep is the measurement

    async def run_once(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(self.interval_s)
        self.last_lag = max(0.0, loop.time() - started - self.interval_s)
        self._observe(self.last_lag)

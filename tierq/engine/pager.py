"""Refills the memory tier from the dispatch tier (or, embedded, from the record store).

It runs when the memory tier drops below its low-water mark, when the dispatch tier signals
new work, and on a slow tick (so tasks scheduled far ahead are claimed as they come within the
claim horizon). It never claims more than the memory tier has room for.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tierq.engine.service import Service

if TYPE_CHECKING:
    from tierq.engine.engine import Engine


class Pager(Service):
    name = "pager"

    def __init__(self, engine: Engine, tick_s: float) -> None:
        super().__init__()
        self._engine = engine
        self._tick_s = tick_s
        # True while the lower tiers may hold work for us; cleared when a claim comes back
        # short. Set on submit overflow, on hand-backs, and by dispatch wake-ups.
        self.more_hint = True
        self.claimed = 0

    def next_wait(self) -> float | None:
        return self._tick_s

    def poke(self) -> None:
        """The lower tiers may have work for us now (overflow, a wake-up, a hand-back)."""
        self.more_hint = True
        self.wake()

    def low(self) -> None:
        """The memory tier ran low: refill now only if the lower tiers may hold work; a
        drained heap with nothing below must not cost a claim round trip per task."""
        if self.more_hint:
            self.wake()

    async def run_once(self) -> None:
        engine = self._engine
        room = engine.room()
        # Claim in chunks big enough to amortise the round trip, but only when it matters:
        # while the heap is above its low-water mark nothing is starving.
        if room <= 0 or len(engine.memory) > engine.memory.low_water:
            return
        limit = min(room, engine.claim_batch)
        # The room stays promised to this claim while it is in flight, or a submission
        # arriving meanwhile would take it too and the memory bound would be overrun.
        engine.reserve(limit)
        try:
            tasks = await engine.dispatch.claim(engine.node_id, limit, engine.clock())
        finally:
            engine.reserve(-limit)
        if len(tasks) < limit:
            self.more_hint = False
        if tasks:
            self.claimed += len(tasks)
            engine.accept_claimed(tasks)
            if len(tasks) == limit:
                self.wake()  # there may be more: go again at once


class WorkWatcher(Service):
    """Turns the dispatch tier's wake-ups (another replica enqueued work) into pager runs."""

    name = "work-watcher"

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine

    def next_wait(self) -> float | None:
        return 0.0

    async def run_once(self) -> None:
        # Wait for work or for stop, whichever comes first, so stopping is immediate.
        work = asyncio.ensure_future(self._engine.dispatch.wait_for_work(1.0))
        stop = asyncio.ensure_future(self.wake_event.wait())
        try:
            await asyncio.wait((work, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            unfinished = [t for t in (work, stop) if not t.done()]
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished)  # reaps them; our own cancellation still raises
        if work.done() and not work.cancelled():
            work.result()  # re-raises the dispatch tier's error, if it had one
            self._engine.pager.poke()

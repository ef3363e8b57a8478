"""Refills the memory tier from the dispatch tier (or, embedded, from the record store).

It runs when the memory tier drops below its low-water mark, when the lower tiers may have
new work (``WorkHint.poke``: submit overflow, hand-backs, released dependents, rescued leases,
wake-ups from other replicas), and on a slow tick (so tasks scheduled far ahead are claimed as
they come within the claim horizon). It never claims more than the memory tier has room for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from tierq.engine.held import HeldTasks
from tierq.engine.service import Service
from tierq.model import Task

Claim = Callable[[int, float], Awaitable[list[Task]]]  # (limit, now) -> tasks leased to us


class WorkHint:
    """Whether the lower tiers may hold work for this process. Anyone who may have put work
    there pokes it; the pager clears it when a claim comes back short, so a drained heap with
    nothing below costs no claim round trip per task."""

    def __init__(self) -> None:
        self.pending = True
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def poke(self) -> None:
        self.pending = True
        for listener in self._listeners:
            listener()


class Pager(Service):
    name = "pager"

    def __init__(
        self,
        held: HeldTasks,
        claim: Claim,
        accept: Callable[[Sequence[Task]], None],
        hint: WorkHint,
        clock: Callable[[], float],
        tick_s: float,
        batch: int,
    ) -> None:
        super().__init__()
        self._held = held
        self._memory = held.memory
        self._claim = claim
        self._accept = accept
        self._clock = clock
        self._tick_s = tick_s
        self._batch = batch
        self.hint = hint
        self.claimed = 0
        hint.subscribe(self.wake)
        self._memory.on_low = self.low

    def next_wait(self) -> float | None:
        return self._tick_s

    def low(self) -> None:
        """The memory tier ran low: refill now only if the lower tiers may hold work."""
        if self.hint.pending:
            self.wake()

    async def run_once(self) -> None:
        held = self._held
        room = held.room()
        # Claim in chunks big enough to amortise the round trip, but only when it matters:
        # while the heap is above its low-water mark nothing is starving.
        if room <= 0 or len(self._memory) > self._memory.low_water:
            return
        limit = min(room, self._batch)
        # The room stays promised to this claim while it is in flight, or a submission
        # arriving meanwhile would take it too and the memory bound would be overrun.
        held.reserve(limit)
        try:
            tasks = await self._claim(limit, self._clock())
        finally:
            held.reserve(-limit)
        if len(tasks) < limit:
            self.hint.pending = False
        if tasks:
            self.claimed += len(tasks)
            self._accept(tasks)
            if len(tasks) == limit:
                self.wake()  # there may be more: go again at once


class WorkWatcher(Service):
    """Turns the dispatch tier's wake-ups (another replica enqueued work) into pager runs."""

    name = "work-watcher"

    def __init__(self, wait_for_work: Callable[[float], Awaitable[None]], hint: WorkHint) -> None:
        super().__init__()
        self._wait_for_work = wait_for_work
        self._hint = hint

    def next_wait(self) -> float | None:
        return 0.0

    async def run_once(self) -> None:
        # Wait for work or for stop, whichever comes first, so stopping is immediate.
        work = asyncio.ensure_future(self._wait_for_work(1.0))
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
            self._hint.poke()

"""The memory tier: the tasks this process will run next.

Two structures, both bounded together by ``limit``:
- a ready heap ordered by (priority desc, run_at, id) — ids are time-ordered, so the last key
  is arrival order;
- a timer heap of delayed tasks ordered by run_at. One ``loop.call_at`` timer is armed for the
  earliest run_at; when it fires, every due task moves to the ready heap. No polling.

Running tasks count against the limit too (``reserve``/``release``): the bound is on what this
process holds, so a huge backlog stays in the record or dispatch tier.

What must stay true: a task is in at most one of the heaps; ``len(self)`` + running never
exceeds ``limit`` through ``push``/``take_room`` (callers ask for room first).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
from collections.abc import Callable, Iterable

from tierq.model import Task, TaskState


class MemoryTier:
    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._ready: list[tuple[int, float, str, Task]] = []
        self._delayed: list[tuple[float, str, Task]] = []
        # id() of the Task objects whose heap entries are lazily deleted (cancelled). Keyed by
        # object, not task id: a cancelled task may be retried and claimed again as a new
        # object while its old entry is still in a heap. The entry keeps its object alive,
        # so the id() cannot be reused while it is pending.
        self._removed: set[int] = set()
        self.running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        # Idle workers, woken one per ready task (no thundering herd of every worker).
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        # Called with the tasks a timer moved from delayed to ready (the engine records it).
        self.on_promoted: Callable[[list[Task]], None] | None = None
        # Called when held tasks drop below the low-water mark (the pager refills).
        self.on_low: Callable[[], None] | None = None
        self.low_water = max(1, limit // 2)

    # ---- size and room ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ready) + len(self._delayed) - len(self._removed)

    @property
    def held(self) -> int:
        """Everything this process holds: queued, delayed and running."""
        return len(self) + self.running

    def room(self) -> int:
        return max(0, self.limit - self.held)

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    @property
    def delayed_count(self) -> int:
        return len(self._delayed)

    # ---- adding ----------------------------------------------------------------------------

    def push(self, task: Task) -> None:
        """Add a leased task: ready if due, otherwise onto the timer heap."""
        if task.run_at <= self._clock():
            heapq.heappush(self._ready, (-task.priority, task.run_at, task.id, task))
            if task.state is TaskState.SCHEDULED and self.on_promoted is not None:
                # Due by the time it arrived: recorded as queued, as a timer promotion is.
                self.on_promoted([task])
            self._signal_ready(1)
        else:
            heapq.heappush(self._delayed, (task.run_at, task.id, task))
            self._arm_timer()

    def push_many(self, tasks: Iterable[Task]) -> None:
        now = self._clock()
        ready, delayed = self._ready, self._delayed
        added_ready = 0
        added_delayed = False
        late: list[Task] = []
        for task in tasks:
            if task.run_at <= now:
                heapq.heappush(ready, (-task.priority, task.run_at, task.id, task))
                added_ready += 1
                if task.state is TaskState.SCHEDULED:
                    late.append(task)
            else:
                heapq.heappush(delayed, (task.run_at, task.id, task))
                added_delayed = True
        if late and self.on_promoted is not None:
            self.on_promoted(late)
        if added_ready:
            self._signal_ready(added_ready)
        if added_delayed:
            self._arm_timer()

    # ---- taking ----------------------------------------------------------------------------

    def pop_ready(self) -> Task | None:
        """The next task to run, counted as running until ``finished`` is called."""
        ready, removed = self._ready, self._removed
        while ready:
            task = heapq.heappop(ready)[3]
            if removed and id(task) in removed:
                removed.discard(id(task))
                continue
            self.running += 1
            # len(self), inlined: this runs once per task.
            if (
                self.on_low is not None
                and len(ready) + len(self._delayed) - len(removed) == self.low_water
            ):
                self.on_low()
            return task
        return None

    def finished(self) -> None:
        """A task popped by ``pop_ready`` is no longer held (done, or handed elsewhere)."""
        self.running -= 1
        if self.on_low is not None and not self._ready and self.running == 0:
            self.on_low()

    def remove(self, task: Task) -> None:
        """Forget a queued or delayed task (it was cancelled). O(1); the heap entry is
        skipped when it surfaces."""
        self._removed.add(id(task))

    async def wait_ready(self) -> None:
        if self._ready:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # A wake-up meant for this worker must not be lost with it.
            if waiter.done() and not waiter.cancelled():
                self._signal_ready(1)
            raise

    def drain(self) -> list[Task]:
        """Remove and return everything queued or delayed (for hand-back at shutdown)."""
        removed = self._removed
        tasks = [e[3] for e in self._ready if id(e[3]) not in removed]
        tasks += [e[2] for e in self._delayed if id(e[2]) not in removed]
        self._ready.clear()
        self._delayed.clear()
        self._removed.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = float("inf")
        return tasks

    # ---- timers ----------------------------------------------------------------------------

    def _signal_ready(self, count: int) -> None:
        waiters = self._waiters
        while count > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    def _arm_timer(self) -> None:
        if not self._delayed:
            return
        first = self._delayed[0][0]
        if first >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, first - self._clock())
        self._timer_at = first
        self._timer = loop.call_at(loop.time() + delay, self._promote_due)

    def _promote_due(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        self.promote_due()
        self._arm_timer()

    def promote_due(self) -> list[Task]:
        """Move every due delayed task to the ready heap; return them."""
        now = self._clock()
        delayed, removed = self._delayed, self._removed
        moved: list[Task] = []
        while delayed and delayed[0][0] <= now:
            task = heapq.heappop(delayed)[2]
            if removed and id(task) in removed:
                removed.discard(id(task))
                continue
            heapq.heappush(self._ready, (-task.priority, task.run_at, task.id, task))
            moved.append(task)
        if moved:
            self._signal_ready(len(moved))
            if self.on_promoted is not None:
                self.on_promoted(moved)
        return moved

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

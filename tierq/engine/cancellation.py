"""Cancellation: by a user on this replica, announced by another replica, and the race with a
claim that brings the task in while the lower tiers cancel it.

What must stay true: a cancelled task never starts. A copy claimed while the tiers cancel it
is parked, never queued, and dropped once the cancel holds (or queued after all if the cancel
lost); a cancel another replica announced while a claim was in flight is honoured when that
claim arrives (for ``ANNOUNCED_CANCEL_MEMORY_S``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from tierq.engine.dependencies import Dependencies
from tierq.engine.errors import Conflict
from tierq.engine.flusher import Reports
from tierq.engine.held import HeldTasks
from tierq.model import TERMINAL_STATES, Task, TaskState, Transition
from tierq.storage.base import Ack, Dispatch, RecordStore

# How long an announced cancel is remembered for a claim that may be in flight. A claim takes
# milliseconds; a minute is a wide margin.
ANNOUNCED_CANCEL_MEMORY_S = 60.0
ANNOUNCED_CANCEL_LIMIT = 10_000  # past this many remembered, the expired ones are dropped
# How long a user's cancel waits for an interrupted handler to end before it answers.
INTERRUPT_WAIT_S = 1.0


class Cancellation:
    def __init__(
        self,
        held: HeldTasks,
        store: RecordStore,
        dispatch: Dispatch,
        dependencies: Dependencies,
        get: Callable[[str], Awaitable[Task]],
        interrupt: Callable[[str], asyncio.Task[object] | None],
        reports: Reports,
        flush: Callable[[], Awaitable[None]],
        clock: Callable[[], float],
        on_cancelled: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._held = held
        self._store = store
        self._dispatch = dispatch
        self._dependencies = dependencies
        self._get = get
        self._interrupt = interrupt
        self._reports = reports
        self._flush = flush
        self._clock = clock
        # Told the ids this service cancelled by a direct record write, for their events
        # (cancels of held tasks go through the flusher, which publishes them).
        self._on_cancelled = on_cancelled
        self._distributed = dispatch.capabilities.shared
        # Tasks being cancelled in the lower tiers -> a copy a claim brought in meanwhile.
        self._cancelling: dict[str, Task | None] = {}
        # Embedded: ids cancelled in the record tier here -> when, for a claim that read them
        # before the cancel and lands after it (seen: a cancelled task queued again).
        self._cancelled_here: dict[str, float] = {}
        # Ids another replica announced as cancelled that were not held here -> until when a
        # claim bringing one in must honour it.
        self._announced: dict[str, float] = {}

    # ---- claims ------------------------------------------------------------------------------

    def accept_claimed(self, tasks: Sequence[Task]) -> None:
        """Tasks leased to this process by the pager go into the memory tier, except those a
        cancel is racing."""
        fresh = self._held.accept(tasks)
        if self._cancelling:
            for task in fresh:
                if task.id in self._cancelling:
                    self._cancelling[task.id] = task
            fresh = [t for t in fresh if t.id not in self._cancelling]
        if self._cancelled_here:
            # Cancelled in the record tier here while this claim was in flight: the claim's
            # read came first, and its copy (no newer than the cancel; a retry since would
            # be) must not queue. The cancel cleared the lease: nothing to settle.
            keep = []
            for task in fresh:
                at = self._cancelled_here.pop(task.id, None)
                if at is None or task.updated_at > at:
                    keep.append(task)
            fresh = keep
        if self._announced:
            # Cancelled by another replica while this claim was in flight: the announcement
            # found nothing here then, so it is honoured now (the lease is settled, not run).
            now = self._clock()
            keep = []
            for task in fresh:
                if self._announced.pop(task.id, 0.0) > now:
                    self._held.hold(task)
                    self.record_cancel(task)
                else:
                    keep.append(task)
            fresh = keep
        self._held.push(fresh)

    def record_cancel(self, task: Task) -> None:
        """Cancel a task this process holds but has not started: record it cancelled and,
        distributed, settle the lease it was granted for the attempt it would have run."""
        now = self._clock()
        task.move(TaskState.CANCELLED, now)
        task.finished_at = now
        task.last_error = "cancelled"
        self._reports.add(
            Transition(
                task.id,
                task.attempt,
                TaskState.CANCELLED,
                now,
                finished_at=now,
                error="cancelled",
                lease_owner=None,
                task=task,
            ),
            Ack(task.id, task.attempt + 1, TaskState.CANCELLED) if self._distributed else None,
        )

    def _cancel_queued(self, task: Task) -> None:
        """Cancel a task this process holds queued or delayed in its memory tier."""
        self._held.memory.remove(task)
        self.record_cancel(task)

    # ---- a user's cancel ---------------------------------------------------------------------

    async def cancel(self, task_id: str) -> Task:
        held = self._held
        task = await self._get(task_id)
        # A claim may have brought it in while it was read from the store: act on that copy.
        task = held.get(task_id) or task
        if task.state in TERMINAL_STATES:
            raise Conflict(
                f"task is {task.state.value}; only live tasks can be cancelled", task.state
            )
        if task_id in held:
            if task.state is TaskState.RUNNING:
                handler = self._interrupt(task_id)
                if handler is None:
                    # Past interruption (its handler has returned): its outcome stands. The
                    # record may still say queued, so cancelling there would contradict it.
                    raise Conflict("task is finishing and cannot be cancelled", task.state)
                await asyncio.wait((handler,), timeout=INTERRUPT_WAIT_S)
                return task
            if task.state in (TaskState.QUEUED, TaskState.SCHEDULED):
                self._cancel_queued(task)
                await self._flush()
                return task
        return await self._cancel_in_tiers(task_id)

    async def _cancel_in_tiers(self, task_id: str) -> Task:
        now = self._clock()
        # A claim may bring the task in while the tiers cancel it: that copy is parked by
        # accept_claimed (never queued, so it cannot run) and dropped if the cancel holds.
        self._cancelling[task_id] = None
        held_elsewhere = False
        try:
            if self._distributed:
                held_elsewhere = not await self._dispatch.cancel_many([task_id])
            done = await self._store.task_cancel_many([task_id], now)
        finally:
            parked = self._cancelling.pop(task_id, None)
        if held_elsewhere:
            # Leased by another replica (held in its memory, or running there): it drops or
            # interrupts its copy, and its report of the attempt (if any) ends it as cancelled.
            await self._dispatch.announce_cancel([task_id])
        if not done:
            if parked is not None:
                self.accept_claimed([parked])
            current = await self._get(task_id)
            if held_elsewhere and current.state is TaskState.RUNNING:
                return current
            raise Conflict(
                f"task is {current.state.value} and cannot be cancelled here", current.state
            )
        if not self._distributed:
            # A claim that read the task before this write may land after it (distributed, the
            # dispatch tier's cancel refuses a leased task instead: see above).
            self._remember_cancel(task_id, now)
        if self._on_cancelled is not None:
            await self._on_cancelled(done)
        await self._dependencies.cancelled(done)
        return await self._get(task_id)

    def _remember_cancel(self, task_id: str, at: float) -> None:
        cancelled = self._cancelled_here
        cancelled[task_id] = at
        if len(cancelled) > ANNOUNCED_CANCEL_LIMIT:
            oldest = at - ANNOUNCED_CANCEL_MEMORY_S
            self._cancelled_here = {i: t for i, t in cancelled.items() if t > oldest}

    # ---- another replica's cancel ------------------------------------------------------------

    def on_announced(self, ids: list[str]) -> None:
        """Another replica cancelled tasks; drop or interrupt the ones held here, and
        remember the others for a while in case a claim brings them in."""
        remember_until = self._clock() + ANNOUNCED_CANCEL_MEMORY_S
        for task_id in ids:
            task = self._held.get(task_id)
            if task is None:
                self._announced[task_id] = remember_until
            elif task.state is TaskState.RUNNING:
                self._interrupt(task_id)
            elif task.state in (TaskState.QUEUED, TaskState.SCHEDULED):
                self._cancel_queued(task)
        if len(self._announced) > ANNOUNCED_CANCEL_LIMIT:
            now = self._clock()
            self._announced = {i: until for i, until in self._announced.items() if until > now}

    def remembers(self, task_id: str) -> bool:
        """Whether an announced cancel of this id waits for a claim to bring it in."""
        return self._announced.get(task_id, 0.0) > self._clock()

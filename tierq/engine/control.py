"""What users do to tasks after submitting them: read, list, cancel, retry."""

from __future__ import annotations

import asyncio
import logging

from tierq.engine.core import EngineCore
from tierq.engine.errors import (
    Conflict,
    NotFound,
)
from tierq.engine.model import (
    TERMINAL_STATES,
    Execution,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
)

log = logging.getLogger("tierq.engine")

# How long an announced cancel is remembered for a claim that may be in flight. A claim takes
# milliseconds; a minute is a wide margin.
ANNOUNCED_CANCEL_MEMORY_S = 60.0


class Control(EngineCore):
    async def get(self, task_id: str) -> Task:
        task = self._live.get(task_id)
        if task is not None:
            return task
        found = await self.store.task_get(task_id)
        if found is None:
            raise NotFound(f"no task {task_id}")
        return found

    async def list_tasks(self, flt: TaskFilter) -> TaskPage:
        return await self.store.task_list(flt)

    async def executions(self, task_id: str) -> list[Execution]:
        await self.get(task_id)
        await self._flush_if_live(task_id)
        return await self.store.execution_list(task_id)

    async def _flush_if_live(self, task_id: str) -> None:
        if task_id in self._live:
            await self.flusher.run_once()

    async def cancel(self, task_id: str) -> Task:
        task = await self.get(task_id)
        # The pager may have claimed it while it was read from the store: act on the held copy.
        task = self._live.get(task_id, task)
        if task.state in TERMINAL_STATES:
            raise Conflict(
                f"task is {task.state.value}; only live tasks can be cancelled", task.state
            )
        if task_id in self._live:
            if task.state is TaskState.RUNNING:
                handler = self.workers.request_cancel(task_id)
                if handler is None:
                    # Past interruption (its handler has returned): its outcome stands. The
                    # record may still say queued, so cancelling there would contradict it.
                    raise Conflict("task is finishing and cannot be cancelled", task.state)
                await asyncio.wait((handler,), timeout=1.0)
                return task
            if task.state in (TaskState.QUEUED, TaskState.SCHEDULED):
                self._cancel_held(task)
                await self.flusher.run_once()
                return task
        now = self.clock()
        # The pager may claim the task while the tiers cancel it: a copy claimed meanwhile is
        # parked by accept_claimed (never queued, so it cannot run) and dropped if cancelled.
        self._cancelling[task_id] = None
        held_elsewhere = False
        try:
            if self.distributed:
                held_elsewhere = not await self.dispatch.cancel_many([task_id])
            done = await self.store.task_cancel_many([task_id], now)
        finally:
            parked = self._cancelling.pop(task_id, None)
        if held_elsewhere:
            # Leased by another replica (held in its memory, or running there): it drops or
            # interrupts its copy, and its report of the attempt (if any) ends it as cancelled.
            await self.dispatch.announce_cancel([task_id])
        if not done:
            if parked is not None:
                self.accept_claimed([parked])
            current = await self.get(task_id)
            if held_elsewhere and current.state is TaskState.RUNNING:
                return current
            raise Conflict(
                f"task is {current.state.value} and cannot be cancelled here", current.state
            )
        if self._pending_deps:
            await self._release_dependents(done)
        return await self.get(task_id)

    def _cancel_held(self, task: Task) -> None:
        """Cancel a task this process holds queued or delayed in its memory tier."""
        self.memory.remove(task)
        self._record_cancel(task)

    def _on_cancel_announced(self, ids: list[str]) -> None:
        """Another replica cancelled tasks; drop or interrupt the ones held here, and
        remember the others for a while in case a claim brings them in."""
        remember_until = self.clock() + ANNOUNCED_CANCEL_MEMORY_S
        for task_id in ids:
            task = self._live.get(task_id)
            if task is None:
                self._announced_cancels[task_id] = remember_until
            elif task.state is TaskState.RUNNING:
                self.workers.request_cancel(task_id)
            elif task.state in (TaskState.QUEUED, TaskState.SCHEDULED):
                self._cancel_held(task)
        if len(self._announced_cancels) > 10_000:
            now = self.clock()
            self._announced_cancels = {
                i: until for i, until in self._announced_cancels.items() if until > now
            }

    async def retry(self, task_id: str) -> Task:
        await self.get(task_id)
        await self._flush_if_live(task_id)
        task = await self.get(task_id)
        if task.state not in (TaskState.FAILED, TaskState.CANCELLED):
            raise Conflict(
                f"task is {task.state.value}; only failed or cancelled tasks can be retried",
                task.state,
            )
        changed = await self.store.task_retry_many([task_id], self.clock())
        if not changed:
            current = await self.get(task_id)
            raise Conflict(f"task is {current.state.value}", current.state)
        fresh = await self.get(task_id)
        if self.distributed:
            await self.enqueue_shared([fresh])
        self.pager.poke()
        return fresh

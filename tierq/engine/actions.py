"""What a caller does to tasks by id: read one, wait for it to end, list, read its attempts,
cancel, retry. Each is scoped to a tenant (None: every tenant, a platform caller).

What must stay true: another tenant's task is never found, so it gets the same NotFound as a
task that does not exist; the scope is a condition of the store's query (and of the held copy,
which the memory tier reads without one), never a filter applied to what was returned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from tierq.engine.cancellation import Cancellation
from tierq.engine.errors import Conflict, NotFound
from tierq.engine.events import Batch, EventSource
from tierq.engine.feed import EventFeed
from tierq.engine.flusher import Flusher
from tierq.engine.held import HeldTasks
from tierq.engine.pager import WorkHint
from tierq.model import (
    TERMINAL_EVENTS,
    TERMINAL_STATES,
    EventFilter,
    Execution,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
)
from tierq.storage.base import RecordStore


class TaskActions:
    def __init__(
        self,
        held: HeldTasks,
        store: RecordStore,
        feed: EventFeed,
        flusher: Flusher,
        cancellation: Cancellation,
        events: EventSource,
        publish: Callable[[Batch], Awaitable[None]],
        enqueue_shared: Callable[[Sequence[Task]], Awaitable[None]] | None,
        hint: WorkHint,
        clock: Callable[[], float],
    ) -> None:
        self._held = held
        self._store = store
        self._feed = feed
        self._flusher = flusher
        self._cancellation = cancellation
        self._events = events
        self._publish = publish
        self._enqueue_shared = enqueue_shared
        self._hint = hint
        self._clock = clock

    async def get(self, task_id: str, tenant: str | None = None) -> Task:
        task = self._held.get(task_id)
        if task is not None:
            if tenant is None or task.tenant == tenant:
                return task
            raise NotFound(f"no task {task_id}")
        found = await self._store.task_get(task_id, tenant)
        if found is None:
            raise NotFound(f"no task {task_id}")
        return found

    async def wait_finished(self, task_id: str, timeout_s: float, tenant: str | None) -> Task:
        """The task once it is terminal, or after ``timeout_s`` as it is then. Woken by its
        terminal event (from any replica), not by reading the store in a loop."""
        listener = await self._feed.listen(EventFilter(task_id=task_id, events=TERMINAL_EVENTS))
        try:
            task = await self.get(task_id, tenant)
            if task.state not in TERMINAL_STATES:
                await listener.take(timeout_s)
                task = await self.get(task_id, tenant)
            return task
        finally:
            self._feed.unlisten(listener)

    async def page(self, flt: TaskFilter) -> TaskPage:
        return await self._store.task_list(flt)

    async def executions(self, task_id: str, tenant: str | None = None) -> list[Execution]:
        await self.get(task_id, tenant)
        await self._flush_if_held(task_id)
        return await self._store.execution_list(task_id)

    async def _flush_if_held(self, task_id: str) -> None:
        if task_id in self._held:
            await self._flusher.run_once()

    async def cancel(self, task_id: str, tenant: str | None = None) -> Task:
        await self.get(task_id, tenant)  # NotFound for another tenant's task
        return await self._cancellation.cancel(task_id)

    async def retry(self, task_id: str, tenant: str | None = None) -> Task:
        """Replay a failed (dead-lettered) or cancelled task: a new attempt budget."""
        await self.get(task_id, tenant)
        await self._flush_if_held(task_id)
        task = await self.get(task_id, tenant)
        if task.state not in (TaskState.FAILED, TaskState.CANCELLED):
            raise Conflict(
                f"task is {task.state.value}; only failed or cancelled tasks can be retried",
                task.state,
            )
        changed = await self._store.task_retry_many([task_id], self._clock())
        if not changed:
            current = await self.get(task_id)
            raise Conflict(f"task is {current.state.value}", current.state)
        fresh = await self.get(task_id)
        await self._publish(self._events.retried([fresh]))
        if self._enqueue_shared is not None:
            await self._enqueue_shared([fresh])
        self._hint.poke()
        return fresh

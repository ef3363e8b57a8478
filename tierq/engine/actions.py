"""What a caller does to tasks by id: read one, wait for it to end, list, read its attempts,
cancel, retry; and cancel or retry in bulk by filter. Each is scoped to a tenant (None: every
tenant, a platform caller).

What must stay true: another tenant's task is never found, so it gets the same NotFound as a
task that does not exist; the scope is a condition of the store's query (and of the held copy,
which the memory tier reads without one), never a filter applied to what was returned.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from tierq.engine.cancellation import Cancellation
from tierq.engine.errors import Conflict, NotFound
from tierq.engine.events import Batch, EventSource
from tierq.engine.feed import EventFeed
from tierq.engine.flusher import Flusher
from tierq.engine.held import HeldTasks
from tierq.engine.pager import WorkHint
from tierq.ids import id_floor
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

# Bulk operations: tasks read per page, and cancels in flight at once.
BULK_PAGE = 500
BULK_CONCURRENCY = 32


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

    # ---- bulk operations -----------------------------------------------------------------------

    async def bulk(self, flt: TaskFilter, action: str, since: float | None = None) -> int:
        """Cancel (``action`` "cancel") or retry ("retry") every task ``flt`` matches that was
        created at ``since`` or later, a page of BULK_PAGE at a time, newest first (keyset
        paging, so changed tasks never shift the pages). Returns how many changed."""
        flt = dataclasses.replace(
            flt, sort_field="created_at", descending=True, page=0, size=BULK_PAGE, after_id=None
        )
        floor = None if since is None else id_floor(since)
        changed = 0
        while True:
            page = await self._store.task_list(flt)
            items = [t for t in page.items if floor is None or t.id >= floor]
            if action == "retry":
                changed += await self._retry_page(items)
            else:
                changed += await self._cancel_page(items)
            if len(items) < len(page.items) or not page.has_more:
                return changed
            flt = dataclasses.replace(flt, after_id=page.items[-1].id)

    async def _retry_page(self, tasks: Sequence[Task]) -> int:
        ids = [t.id for t in tasks if t.state in (TaskState.FAILED, TaskState.CANCELLED)]
        changed = await self._store.task_retry_many(ids, self._clock())
        if not changed:
            return 0
        fresh = await self._store.task_get_many(changed)
        await self._publish(self._events.retried(fresh))
        if self._enqueue_shared is not None:
            await self._enqueue_shared(fresh)
        self._hint.poke()
        return len(changed)

    async def _cancel_page(self, tasks: Sequence[Task]) -> int:
        """Each through the one cancel path (it knows held, running and claimed copies),
        BULK_CONCURRENCY at once."""
        live = [t.id for t in tasks if t.state not in TERMINAL_STATES]
        done = 0

        async def one(task_id: str) -> None:
            nonlocal done
            try:
                await self._cancellation.cancel(task_id)
            except (Conflict, NotFound):
                return  # it ended (or went) meanwhile
            done += 1

        for i in range(0, len(live), BULK_CONCURRENCY):
            async with asyncio.TaskGroup() as group:
                for task_id in live[i : i + BULK_CONCURRENCY]:
                    group.create_task(one(task_id))
        return done

"""Dependencies between tasks: checked at submission, released when what they wait on ends.

A task with ``depends_on`` waits in ``pending`` until every task it names has succeeded; it is
cancelled when one of them fails or is cancelled (and so, in turn, are its own dependents).

What must stay true: every finished task's dependents are resolved at least once, even across
a tier failure (the ids are kept and retried after a heartbeat) or a crash (start-up sweeps
every pending task). Embedded, ``may_wait`` lets finished batches skip the lookup while no
pending task exists; distributed, any replica may add dependents, so it never goes false.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from tierq.engine.errors import InvalidDependency
from tierq.engine.held import HeldTasks
from tierq.engine.pager import WorkHint
from tierq.model import Task, TaskState
from tierq.storage.base import RecordStore

log = logging.getLogger("tierq.engine")


class Dependencies:
    def __init__(
        self,
        store: RecordStore,
        held: HeldTasks,
        enqueue_shared: Callable[[Sequence[Task]], Awaitable[None]],
        hint: WorkHint,
        clock: Callable[[], float],
        distributed: bool,
        on_cancelled: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._held = held
        self._enqueue_shared = enqueue_shared
        self._hint = hint
        self._clock = clock
        self._distributed = distributed
        # Told the ids of dependents this service cancelled (durably), for their events.
        self._on_cancelled = on_cancelled
        self.may_wait = True  # pending (dependency-waiting) tasks may exist
        self._deferred: list[str] = []  # finished ids whose dependents wait for a retry

    async def check(self, tasks: Sequence[Task]) -> None:
        """Refuse unknown dependencies (``InvalidDependency``) and make each task whose
        dependencies have not all succeeded ``pending``. Before the first commit of the
        tasks, so this sets their initial state."""
        wanted = {d for t in tasks for d in t.depends_on}
        if not wanted:
            return
        in_batch = {t.id: t for t in tasks}
        outside = [d for d in wanted if d not in in_batch]
        # A task may depend on its own tenant's tasks only: another tenant's is not found.
        tenants = {t.tenant for t in tasks}
        scope = tenants.pop() if len(tenants) == 1 else None
        found = (
            {t.id: t for t in await self._store.task_get_many(outside, scope)} if outside else {}
        )
        for index, task in enumerate(tasks):
            if not task.depends_on:
                continue
            waiting = False
            for position, dep in enumerate(task.depends_on):
                dep_task = found.get(dep) or in_batch.get(dep)
                if dep_task is None or dep == task.id or dep_task.tenant != task.tenant:
                    raise InvalidDependency(index, position, dep)
                held = self._held.get(dep)
                state = held.state if held is not None else dep_task.state
                if state is not TaskState.SUCCEEDED:
                    waiting = True
            if waiting:
                task.state = TaskState.PENDING  # initial state, not a transition

    async def submitted(self, new: Sequence[Task]) -> None:
        """Committed tasks: a dependency that finished (or was already failed or cancelled)
        before these rows were committed will never trigger another release."""
        waiting = [t for t in new if t.state is TaskState.PENDING]
        if waiting:
            self.may_wait = True
            await self.release(sorted({d for t in waiting for d in t.depends_on}))

    async def finished(self, finished: list[str]) -> None:
        """Tasks reached a terminal state (durably): resolve their dependents. On a tier
        failure the ids are kept and tried again after a heartbeat (``retry_deferred``)."""
        if finished and self.may_wait:
            await self._resolve(finished)

    async def cancelled(self, ids: list[str]) -> None:
        """A user cancelled these tasks (the record tier holds it): their dependents are
        cancelled too. A failure here is the cancel request's own error."""
        if self.may_wait:
            await self.release(ids)

    async def _resolve(self, finished: list[str]) -> None:
        try:
            # Distributed there is no local flag to trust; the record tier's maintained
            # counts are one cheap read instead of sending every finished id. A dependent
            # committed after this read resolves itself on submission (``submitted``).
            if self._distributed and (await self._store.task_counts())[TaskState.PENDING] == 0:
                return
            await self.release(finished)
        except Exception as exc:
            log.warning("resolving dependents failed (%s); retrying after a heartbeat", exc)
            self._deferred.extend(finished)

    async def release(self, finished: list[str]) -> None:
        release = await self._store.task_release_dependents(finished, self._clock())
        if release.ready:
            if self._distributed:
                await self._enqueue_shared(release.ready)
            self._hint.poke()
        if release.cancelled:
            if self._on_cancelled is not None:
                await self._on_cancelled(release.cancelled)
            # Their own dependents must hear about it too.
            await self.release(release.cancelled)
        if not release.ready and not release.cancelled and not self._distributed:
            counts = await self._store.task_counts()
            self.may_wait = counts[TaskState.PENDING] > 0

    async def retry_deferred(self) -> None:
        if self._deferred:
            finished, self._deferred = self._deferred, []
            await self._resolve(finished)

    async def recover(self) -> None:
        """Start-up: a crash between a task's final record write and the release of its
        dependents leaves them pending for good, so every pending task's dependencies are
        resolved once."""
        counts = await self._store.task_counts()
        self.may_wait = self._distributed or counts[TaskState.PENDING] > 0
        if not counts[TaskState.PENDING]:
            return
        deps: set[str] = set()
        async for page in self._store.task_scan((TaskState.PENDING,)):
            for task in page:
                deps.update(task.depends_on)
        if deps:
            await self.release(sorted(deps))

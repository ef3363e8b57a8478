"""Recovery: after a crash (start-up), after the dispatch tier lost its data, after this
replica was declared dead, and after a tier failure deferred some work."""

from __future__ import annotations

import logging

from tierq.engine.core import EngineCore
from tierq.engine.model import (
    TaskFilter,
    TaskState,
)

log = logging.getLogger("tierq.engine")


class Recovery(EngineCore):
    async def recover(self) -> None:
        """Start-up recovery. Embedded: this process owns the store, so every lease and every
        running task belongs to a dead predecessor. Distributed: dead replicas' leases are
        rescued by the rescuer; the dispatch tier is rebuilt from the record tier when it has
        lost its data (this replica is the first to see it empty)."""
        now = self.clock()
        if not self.distributed:
            await self.store.task_recover(now, None)
        else:
            self._generation, created = await self.dispatch.generation()
            if created:
                await self.rebuild_dispatch()
        counts = await self.store.task_counts()
        # Distributed: any replica may add dependents of the tasks this one finishes, so it
        # must always look for them (the flag never goes false; see _release_dependents).
        self._pending_deps = self.distributed or counts[TaskState.PENDING] > 0
        if counts[TaskState.PENDING]:
            await self._sweep_pending()

    async def _sweep_pending(self) -> None:
        """A crash between a task's final record write and the release of its dependents
        leaves them pending for good: resolve every pending task's dependencies once."""
        deps: set[str] = set()
        after: str | None = None
        while True:
            page = await self.store.task_list(
                TaskFilter(
                    states=(TaskState.PENDING,),
                    sort_field="created_at",
                    descending=False,
                    size=5000,
                    after_id=after,
                )
            )
            for task in page.items:
                deps.update(task.depends_on)
            if not page.has_more or not page.items:
                break
            after = page.items[-1].id
        if deps:
            await self._release_dependents(sorted(deps))

    async def rebuild_dispatch(self) -> int:
        """Put every queued, scheduled or running task of the record tier (back) into the
        dispatch tier, which skips the ones it still has. Running ones count: after a data
        loss nobody holds a lease on them any more, and a late completion is refused.

        The flag is cleared before the scan, never after: a write-through that fails while
        the scan runs may belong to rows the scan has already passed (keyset order is by
        creation time, and a group commit can land behind the cursor), so it must leave the
        flag set for the next heartbeat to rebuild again."""
        self.needs_rebuild = False
        try:
            total = await self._offer_record_tier()
        except BaseException:
            self.needs_rebuild = True
            raise
        log.warning("rebuilt the dispatch tier: offered %d live tasks from the record tier", total)
        self.pager.poke()
        return total

    async def _offer_record_tier(self) -> int:
        total = 0
        after: str | None = None
        while True:
            page = await self.store.task_list(
                TaskFilter(
                    states=(TaskState.QUEUED, TaskState.SCHEDULED, TaskState.RUNNING),
                    sort_field="created_at",
                    descending=False,
                    size=5000,
                    after_id=after,
                )
            )
            if page.items:
                await self.dispatch.enqueue_many(page.items, None, self.clock())
                total += len(page.items)
            if not page.has_more or not page.items:
                break
            after = page.items[-1].id
        return total

    async def check_dispatch(self, registered: bool) -> None:
        """Called after each heartbeat (distributed), before workers may start tasks again:
        forget what this replica no longer owns because the dispatch tier lost its data or
        this replica was declared dead. Only what must precede new work happens here; the
        repairs come after (``repair_dispatch``)."""
        generation, created = await self.dispatch.generation()
        if generation != self._generation:
            log.warning("the dispatch tier lost its data (new generation %s)", generation)
            self._generation = generation
            # Another replica may have rebuilt the new generation first and our pager claimed
            # some of these from it: those leases are ours and alive (we heartbeat), so they
            # must go back or the tasks wait forever. Old-generation ids are no-ops there.
            self._unreleased.extend(self._drop_held("the dispatch tier was reset"))
            self.needs_rebuild = self.needs_rebuild or created
        elif not registered:
            self._drop_held("this replica was declared dead and its leases rescued")

    async def repair_dispatch(self) -> None:
        """After the heartbeat's checks: hand back leases Redis may hold for us without our
        holding the task, and rebuild the dispatch tier when it needs it."""
        if self._unreleased:
            # A task we hold again (claimed since) keeps its lease: releasing it would let a
            # second replica run it while we do.
            ids = [i for i in self._unreleased if i not in self._live]
            self._unreleased = []
            try:
                await self.dispatch.release(self.node_id, ids)
            except BaseException:
                self._unreleased = ids + self._unreleased
                raise
        # Superseded leases wait until the stale copy is gone; nothing can claim the task
        # meanwhile (the lease is ours), so no newer copy can be here when it is released.
        gone = [i for i in self._superseded if i not in self._live]
        if gone:
            await self.dispatch.release(self.node_id, gone)
            self._superseded.difference_update(gone)
        if self.needs_rebuild:
            await self.rebuild_dispatch()

    async def retry_deferred(self) -> None:
        """Called after each heartbeat: finish work a tier failure deferred."""
        if self._unreleased_dependents:
            finished, self._unreleased_dependents = self._unreleased_dependents, []
            await self._release_dependents_safely(finished)

    def _drop_held(self, why: str) -> list[str]:
        """Forget queued tasks held in memory: their leases belong to someone else now.
        Running ones finish; their reports will be refused by the fencing token."""
        dropped = self.memory.drain()
        for task in dropped:
            self._live.pop(task.id, None)
        if dropped:
            log.warning("dropped %d held tasks: %s", len(dropped), why)
        return [t.id for t in dropped]

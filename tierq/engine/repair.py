"""Keeping the dispatch tier (Redis) in step with the record tier, distributed.

Owns what this replica knows about the dispatch tier's health: the generation it last saw (a
new one means Redis lost its data), whether a rebuild is owed (a write-through failed), and
leases Redis may hold for us without our holding the task (a call that failed after Redis may
have applied it). The heartbeat drives it: ``check`` before workers may start tasks again,
``repair`` after.

What must stay true: every durable live task reaches the dispatch tier (by its write-through,
or by a rebuild once Redis answers again); a lease this replica holds the task of is never
released (a second replica would run it while we do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from tierq.engine.held import HeldTasks
from tierq.engine.pager import WorkHint
from tierq.model import TERMINAL_STATES, Task, TaskState
from tierq.storage.base import Ack, Dispatch, RecordStore, StoreUnavailable

log = logging.getLogger("tierq.engine")


class DispatchRepair:
    def __init__(
        self,
        store: RecordStore,
        dispatch: Dispatch,
        held: HeldTasks,
        hint: WorkHint,
        clock: Callable[[], float],
        node_id: str,
        pending_acks: Callable[[], list[tuple[Ack, Task | None]]] = list,
    ) -> None:
        self._pending_acks = pending_acks
        self._store = store
        self._dispatch = dispatch
        self._held = held
        self._hint = hint
        self._clock = clock
        self._node_id = node_id
        self.generation = ""  # the dispatch tier's generation this replica last saw
        self.needs_rebuild = False  # a write-through failed: offer the record tier again
        self._unreleased: list[str] = []  # leases Redis may hold for us after a failed call
        self._reclaimed: set[str] = set()  # leased back after a data loss: not to rebuild

    async def open(self) -> None:
        """Start-up: learn the generation; rebuild when this replica is the first to see the
        dispatch tier empty."""
        self.generation, created = await self._dispatch.generation()
        if created:
            await self.rebuild()

    # ---- writing through -----------------------------------------------------------------------

    async def enqueue_shared(self, tasks: Sequence[Task]) -> None:
        """Offer durable tasks to every replica; on failure the next rebuild offers them."""
        try:
            await self._dispatch.enqueue_many(tasks, None, self._clock())
        except Exception:
            self.needs_rebuild = True
            raise

    async def write_through(self, new: Sequence[Task]) -> None:
        """A group commit's new tasks go to the dispatch tier: the ones this replica keeps
        leased to itself, the rest for any replica. On failure the tasks are still durable
        (the answer is still 201); they arrive by the rebuild once Redis answers again."""
        node = self._node_id
        mine = [t for t in new if t.lease_owner == node]
        shared = [t for t in new if t.lease_owner != node and t.state is not TaskState.PENDING]
        if mine:
            try:
                unleased = await self._dispatch.enqueue_many(mine, node, self._clock())
                if unleased:
                    # Its queue got controls meanwhile: a claim hands it out, not us.
                    refused = set(unleased)
                    for task in mine:
                        if task.id in refused:
                            task.lease_owner = None
            except Exception as exc:
                log.warning("write-through failed (%s); rebuild pending", exc)
                self.needs_rebuild = True
                # Held copies are given up (without a lease their reports would be refused).
                # Redis may have applied the call before failing: release whatever lease it
                # holds for us once it answers, or those tasks would wait for our death.
                for task in mine:
                    task.lease_owner = None
                self._unreleased.extend(t.id for t in mine)
        if shared:
            try:
                await self.enqueue_shared(shared)
            except Exception as exc:
                log.warning("write-through failed (%s); rebuild pending", exc)

    # ---- after each heartbeat ------------------------------------------------------------------

    async def check(self, registered: bool) -> None:
        """Before workers may start tasks again: forget what this replica no longer owns
        because the dispatch tier lost its data or this replica was declared dead."""
        generation, created = await self._dispatch.generation()
        if generation != self.generation:
            log.warning("the dispatch tier lost its data (new generation %s)", generation)
            try:
                await self._reclaim()
            except StoreUnavailable as exc:
                # Without our leases back, the held copies cannot be reported on: let them go
                # (another replica runs the tasks; running ones' reports will be refused).
                log.warning("could not reclaim held tasks (%s)", exc)
                self._unreleased.extend(self._drop_queued("the dispatch tier was reset"))
            self.generation = generation  # acks may go again: what we hold is leased
            self.needs_rebuild = self.needs_rebuild or created
        elif not registered:
            self._drop_queued("this replica was declared dead and its leases rescued")

    async def repair(self) -> None:
        """After the heartbeat's checks: hand back leases Redis may hold for us without our
        holding the task, and rebuild the dispatch tier when it needs it."""
        held = self._held
        if self._unreleased:
            # A task we hold again (claimed since) keeps its lease.
            ids = [i for i in self._unreleased if i not in held]
            self._unreleased = []
            try:
                await self._dispatch.release(self._node_id, ids)
            except BaseException:
                self._unreleased = ids + self._unreleased
                raise
        # Superseded leases wait until the stale copy is gone; nothing can claim the task
        # meanwhile (the lease is ours), so no newer copy can be here when it is released.
        gone = held.take_superseded()
        if gone:
            try:
                await self._dispatch.release(self._node_id, gone)
            except BaseException:
                held.keep_superseded(gone)
                raise
        if self.needs_rebuild:
            await self.rebuild()
        self._reclaimed = set()  # rebuilt (or another replica rebuilds): nothing to skip

    async def _reclaim(self) -> None:
        """Lease back, in the new generation, everything this replica still holds (queued,
        running, finished with a report not yet acked), each for the token its next report
        carries, before this replica rebuilds the tier from the record tier: the rebuild
        then skips them, so the only tasks that run twice are those another replica claimed
        first (rebuilt by it before we noticed)."""
        tokens: dict[str, tuple[Task, int]] = {}
        for task_id in self._held.ids():
            task = self._held.get(task_id)
            if task is None:
                continue
            started = task.state is TaskState.RUNNING or task.state in TERMINAL_STATES
            tokens[task_id] = (task, task.attempt if started else task.attempt + 1)
        for ack, task in self._pending_acks():
            if task is not None:
                tokens[ack.task_id] = (task, ack.attempt)
        taken = await self._dispatch.reclaim(self._node_id, list(tokens.values()), self._clock())
        self._reclaimed = set(tokens) - set(taken)
        dropped = 0
        for task_id in taken:
            task = self._held.get(task_id)
            if task is not None and task.state in (TaskState.QUEUED, TaskState.SCHEDULED):
                # Another replica leased it from the rebuilt tier: it runs there, not here.
                self._held.memory.remove(task)
                self._held.forget(task_id)
                dropped += 1
        log.warning(
            "reclaimed %d held tasks after the data loss; %d were leased elsewhere first "
            "(%d queued copies dropped here)",
            len(tokens) - len(taken),
            len(taken),
            dropped,
        )

    def _drop_queued(self, why: str) -> list[str]:
        """Queued tasks held in memory: their leases belong to someone else now. Running ones
        finish; their reports will be refused by the fencing token."""
        dropped = self._held.drop_queued()
        if dropped:
            log.warning("dropped %d held tasks: %s", len(dropped), why)
        return [t.id for t in dropped]

    # ---- rebuilding ----------------------------------------------------------------------------

    async def rebuild(self) -> int:
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
        self._hint.poke()
        return total

    async def _offer_record_tier(self) -> int:
        total = 0
        live = (TaskState.QUEUED, TaskState.SCHEDULED, TaskState.RUNNING)
        async for page in self._store.task_scan(live):
            # What this replica reclaimed is leased to it already; reading the record tier
            # may predate its terminal ack (a rebuild never takes an acked task back either).
            offered = [t for t in page if t.id not in self._reclaimed]
            await self._dispatch.enqueue_many(offered, None, self._clock(), take_back=False)
            total += len(offered)
        return total

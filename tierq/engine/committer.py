"""Group commit for submissions.

Every submission waits in its lane while the previous transaction is being written; when
it finishes, everything that arrived meanwhile goes into the next one. Under load, batches
grow by themselves and durability costs latency, not throughput; an idle system commits a lone
submission at once. ``window_s`` adds an optional wait for company before committing.

What must stay true: a caller's future resolves only after its tasks are committed (or fails
with the store's error, in which case nothing of its batch is acknowledged). One submission the
store refuses for good (``StoreDataError``) must not fail the others it shared
a transaction with: the group is then committed again one submission at a time, in order, and
only the refused ones get the error. An unavailable store fails the whole group (503).

Small submissions (at most ``SMALL_SUBMISSION`` tasks: a single POST) have their own lane:
they are grouped only with each other, taken first, and have ``max_small_inflight``
transaction slots of their own, apart from the ``max_inflight`` of large groups: grouped with
1,000-task batches, a single submit waits for those batches' inserts. The small lane's slot
count is a setting (``commit_small_slots``): where CPU is the limit, every extra slot in flight
splits single submits into more, smaller transactions, each costing two round trips of Python
on the loop whatever its size; where it is not, a second slot spares a submission the wait for
the commit already in flight. Figures: BENCHMARKS.md, "group commit".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from tierq.engine.service import Service
from tierq.model import Task
from tierq.storage.base import StoreDataError

log = logging.getLogger("tierq.engine")

InsertMany = Callable[[Sequence[Task]], Awaitable[list[str]]]
_Waiting = list[tuple[Sequence[Task], "asyncio.Future[list[str]]"]]
SMALL_SUBMISSION = 16


class GroupCommitter(Service):
    name = "committer"

    def __init__(
        self,
        insert_many: InsertMany,
        window_s: float = 0.0,
        max_tasks: int = 2_000,
        max_inflight: int = 4,
        max_small_inflight: int = 1,
    ):
        super().__init__()
        self._insert_many = insert_many
        self._window_s = window_s
        self._max_tasks = max_tasks
        # Transactions allowed in flight at once: while one waits for its fsync the next
        # groups can already be sent (the record store merges or orders them itself).
        self._max_inflight = max_inflight
        self._max_small_inflight = max_small_inflight
        self._inflight = 0  # large groups in flight
        self._small_inflight = 0
        self._pending: _Waiting = []
        self._small: _Waiting = []  # submissions of at most SMALL_SUBMISSION tasks
        self._pending_tasks = 0
        self.commits = 0  # transactions written (for tests and metrics)

    async def submit(self, tasks: Sequence[Task]) -> list[str]:
        """Commit ``tasks`` (in some shared transaction); return their stored ids."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        lane = self._small if len(tasks) <= SMALL_SUBMISSION else self._pending
        lane.append((tasks, future))
        self._pending_tasks += len(tasks)
        self.wake()
        return await future

    @property
    def small_slots(self) -> int:
        """Transactions of small submissions allowed in flight at once."""
        return self._max_small_inflight

    @property
    def waiting(self) -> int:
        """Submissions waiting for a transaction (not yet in one)."""
        return len(self._small) + len(self._pending)

    def next_wait(self) -> float | None:
        return None

    async def run_once(self) -> None:
        """Commit the next group (small submissions first), in one transaction."""
        if not self._small and not self._pending:
            return
        if self._window_s > 0 and self._pending_tasks < self._max_tasks:
            await asyncio.sleep(self._window_s)
        small = bool(self._small)
        self._count_inflight(small, 1)
        await self._commit(self._take(small), small)

    def _next_lane(self) -> bool | None:
        """Which group may start now: small (True), large (False) or none. Each lane has
        its own transaction slots."""
        if self._small and self._small_inflight < self._max_small_inflight:
            return True
        if self._pending and self._inflight < self._max_inflight:
            return False
        return None

    def _count_inflight(self, small: bool, delta: int) -> None:
        if small:
            self._small_inflight += delta
        else:
            self._inflight += delta

    def _take(self, small: bool) -> _Waiting:
        """The next group of one lane: waiting submissions up to ``max_tasks`` tasks (always
        at least one). A bounded group bounds the work done on the event loop to send it,
        and so the wait of every other request."""
        waiting = self._small if small else self._pending
        count = 0
        end = 0
        while end < len(waiting) and (end == 0 or count < self._max_tasks):
            count += len(waiting[end][0])
            end += 1
        batch = waiting[:end]
        del waiting[:end]
        self._pending_tasks -= sum(len(part) for part, _ in batch)
        return batch

    async def _commit(self, batch: _Waiting, small: bool) -> None:
        """Commit one group of one lane. The caller has counted it in flight already (before
        the task runs, so a burst cannot start more than the lane's slots); it is uncounted
        here."""
        tasks: list[Task] = []
        for part, _ in batch:
            tasks.extend(part)
        try:
            stored = await self._insert_many(tasks)
        except Exception as exc:
            if len(batch) > 1 and isinstance(exc, StoreDataError):
                log.warning(
                    "group commit of %d submissions refused (%s: %s); committing each alone",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                await self._commit_each(batch)
                return
            # Nothing of this group is acknowledged; its callers get the error (503 etc.).
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.cancel()
            raise
        finally:
            self._count_inflight(small, -1)
            self.wake()
        self.commits += 1
        offset = 0
        for part, future in batch:
            if not future.done():
                future.set_result(stored[offset : offset + len(part)])
            offset += len(part)

    async def _commit_each(self, batch: _Waiting) -> None:
        # In submission order, so an idempotency key shared by two submissions goes to the
        # earlier one, as it would have in the shared transaction.
        try:
            for part, future in batch:
                if future.done():
                    continue
                try:
                    stored = await self._insert_many(part)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                    continue
                self.commits += 1
                if not future.done():
                    future.set_result(stored)
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.cancel()
            raise

    async def drain(self) -> None:
        while self._small or self._pending:
            await self.run_once()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                while not self._stopping:
                    lane = self._next_lane()
                    if lane is None:
                        await self._sleep(None)
                        continue
                    if self._window_s > 0 and self._pending_tasks < self._max_tasks:
                        await asyncio.sleep(self._window_s)
                        lane = self._next_lane()  # a small submission may have come meanwhile
                        if lane is None:
                            continue
                    self._count_inflight(lane, 1)
                    group.create_task(self._commit(self._take(lane), lane))
            # In-flight commits finished with the group; commit what arrived since.
            await self.drain()
        finally:
            # Submissions still waiting if the committer is cancelled are refused, never left
            # hanging (their callers get an error, so nothing unacknowledged is reported stored).
            for _, future in self._small + self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("shutting down"))
            self._small = []
            self._pending = []

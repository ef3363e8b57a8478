"""Batched state changes: workers report transitions here; the flusher settles them with the
dispatch tier (fencing) and writes them to the record tier, one batch at a time.

Coalescing: transitions are keyed by (task id, attempt), the last one wins, so a task that
started and finished within one flush interval costs one row update, not two. Reports for
different attempts of one task are all kept, in order, and a report carrying an attempt's
outcome is never replaced by a later one without (see ``_put``).

What must stay true: a batch is removed from the buffer only after the record store accepted
it; when the store fails, the batch is retried (acks already settled are not sent again); a
transition refused by the dispatch tier (stale lease) never reaches the record tier. A terminal
ack only ends the lease: the dispatch tier keeps the task (and rescue re-runs it if this
process dies) until ``confirm_many`` follows the record write, so no outcome is lost between
the two writes. A failed confirm never holds up record writes; it is retried on later flushes.

Poison: a transition the record store refuses for good (``StoreDataError``: a value or
constraint the database will not accept) would otherwise be retried forever with everything
queued behind it. The batch is bisected until only the refused transitions are left; those are
logged (ERROR), counted (``tierq_record_rejected_total``) and dropped, the rest is written. A
dropped transition's task is not confirmed with the dispatch tier, so its outcome is not
forgotten there: it runs again if this process dies (at-least-once). Any other failure is
retried whole: it may pass (an outage, a schema being migrated), and setting work aside for
it would strand tasks on a live replica.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from tierq.engine.service import Service
from tierq.model import Task, Transition
from tierq.storage.base import Ack, StoreDataError, StoreUnavailable

log = logging.getLogger("tierq.engine")

AckMany = Callable[[Sequence[Ack]], Awaitable[list[str]]]
TransitionMany = Callable[[Sequence[Transition]], Awaitable[list[str]]]
# Called after a batch is durable: (applied transitions, ids refused as stale).
OnFlushed = Callable[[list[Transition], list[str]], Awaitable[None]]
ConfirmMany = Callable[[Sequence[str]], Awaitable[None]]


class Reports(Protocol):
    """Where a service hands its state changes: the flusher (or a test's recorder)."""

    def add(self, transition: Transition, ack: Ack | None = None) -> None: ...


class Flusher(Service):
    name = "flusher"

    def __init__(
        self,
        ack_many: AckMany,
        transition_many: TransitionMany,
        on_flushed: OnFlushed,
        interval_s: float,
        batch_size: int = 10_000,
        # Reports waiting to be written, past which workers wait (each holds a finished
        # task, its transition and ack: ~1 KB). Four batches keep the writes full; a
        # 200,000 bound let a flush-bound drain grow the process to ~280 MB.
        max_buffer: int = 40_000,
        confirm_many: ConfirmMany | None = None,
        max_unconfirmed: int = 100_000,
        on_rejected: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        # Told the id of each task whose transition was dropped for good (so the engine stops
        # holding a copy the record tier will never confirm, and counts it).
        self._on_rejected = on_rejected
        self._ack_many = ack_many
        self._transition_many = transition_many
        self._on_flushed = on_flushed
        self._interval_s = interval_s
        self._batch_size = batch_size
        self.max_buffer = max_buffer
        self._buffer: dict[tuple[str, int], Transition] = {}
        # Acks under the buffer key of the transition they settle, in the order they were
        # made: a batch takes exactly the acks of the transitions it writes, so a terminal ack
        # is never confirmed before its own transition is in the record tier.
        self._acks: dict[tuple[str, int], list[Ack]] = {}
        # A batch whose acks are settled but whose record write failed: retried first.
        self._settled_unwritten: tuple[list[Transition], list[str]] | None = None
        self._confirm_many = confirm_many
        # Ids acked as terminal in the batch being written, then recorded but not confirmed.
        # Ids dropped past the bound stay in the dispatch tier until this process is gone,
        # when rescue runs them once more and the record tier refuses the repeat.
        self._settled: list[str] = []
        self._unconfirmed: list[str] = []
        self._confirming: asyncio.Task[None] | None = None
        self.max_unconfirmed = max_unconfirmed
        self._room: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self.flushes = 0
        self.rejected = 0  # transitions dropped because the record store refused them for good

    def add(self, transition: Transition, ack: Ack | None = None) -> None:
        buffer = self._buffer
        key = (transition.task_id, transition.attempt)
        if key in buffer:
            key = self._put(transition)
        else:  # the common case, once per attempt: no earlier report to keep (see _put)
            buffer[key] = transition
        if ack is not None:
            self._acks.setdefault(key, []).append(ack)
        n = len(buffer)
        if n == 1 or n >= self._batch_size:
            self.wake()

    def _put(self, transition: Transition) -> tuple[str, int]:
        key = (transition.task_id, transition.attempt)
        earlier = self._buffer.get(key)
        if earlier is not None and earlier.outcome is not None and transition.outcome is None:
            # The attempt has ended (its outcome makes the execution row) and this is a later
            # change without one: promoted out of retry backoff, cancelled while waiting.
            # Replacing the report would lose the attempt's execution row and error, so both
            # are written, in order; the follow-up key (negative) never names a real attempt.
            key = (transition.task_id, -1 - transition.attempt)
        self._buffer[key] = transition
        return key

    def pending_acks(self) -> list[tuple[Ack, Task | None]]:
        """Acks not sent yet, each with the task its report is about (what a replica still
        holds when the dispatch tier loses its data: engine/repair.py reclaims them)."""
        buffer = self._buffer
        return [
            (ack, buffer[key].task)
            for key, acks in self._acks.items()
            if key in buffer
            for ack in acks
        ]

    @property
    def backlog(self) -> int:
        return len(self._buffer) + (
            len(self._settled_unwritten[0]) if self._settled_unwritten else 0
        )

    async def wait_room(self) -> None:
        """Back-pressure for workers: wait while the buffer is over its bound."""
        while self.backlog >= self.max_buffer:
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            await self._room.wait()

    def next_wait(self) -> float | None:
        return None if not self._buffer else self._interval_s

    async def run(self) -> None:
        while not self._stopping:
            await self._sleep(None if not self._buffer and not self._settled_unwritten else 0)
            if not self._buffer and not self._settled_unwritten:
                continue
            if len(self._buffer) < self._batch_size and not self._stopping:
                # Give the batch time to fill (woken early when it reaches batch_size).
                await self._sleep(self._interval_s)
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                # Expected while a tier is down or was reset: one line, no traceback.
                log.warning("flush failed (%s); retrying in %.1fs", exc, self.error_backoff_s)
                await asyncio.sleep(self.error_backoff_s)
            except Exception:
                log.exception("flush failed; retrying in %.1fs", self.error_backoff_s)
                await asyncio.sleep(self.error_backoff_s)
        await self.drain()

    async def drain(self) -> None:
        attempts = 0
        while self._buffer or self._settled_unwritten:
            try:
                await self.run_once()
            except Exception:
                attempts += 1
                if attempts >= 20:
                    log.error("giving up flushing %d transitions at shutdown", self.backlog)
                    raise
                log.exception("flush failed at shutdown; retrying")
                await asyncio.sleep(self.error_backoff_s)

    async def run_once(self) -> None:
        """Write every report buffered when called (in bounded batches). The loop and callers
        that need their reports written (cancel, retry, executions, hand-back) both come
        here, one at a time, or a batch could be written twice."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                # The buffer is first in, first out (a coalesced report keeps its place), so
                # this many batches cover everything present now, whatever arrives meanwhile.
                rounds = -(-len(self._buffer) // self._batch_size) + (
                    1 if self._settled_unwritten else 0
                )
                for _ in range(max(1, rounds)):
                    await self._flush()
                    if not self._buffer and self._settled_unwritten is None:
                        break
            finally:
                # Confirmed too when this returns (callers and tests rely on it).
                confirming, self._confirming = self._confirming, None
                if confirming is not None:
                    await confirming

    async def _flush(self) -> None:
        if self._settled_unwritten is None:
            if not self._buffer:
                return
            transitions, keyed_acks = self._take()
            acks = [ack for _, ack in keyed_acks]
            stale: list[str] = []
            if acks:
                try:
                    stale = await self._ack_many(acks)
                except BaseException:
                    # Nothing was settled: put the batch back in front of newer reports.
                    self._restore(transitions, keyed_acks)
                    raise
            if stale:
                # The dispatch tier says another attempt owns these tasks now: nothing this
                # process reported about them may reach the record tier.
                refused = set(stale)
                transitions = [t for t in transitions if t.task_id not in refused]
            self._settled_unwritten = (transitions, stale)
            if acks and self._confirm_many is not None:
                skip = set(stale)
                self._settled = [
                    a.task_id for a in acks if a.state.terminal and a.task_id not in skip
                ]
        transitions, stale = self._settled_unwritten
        try:
            refused_by_store = await self._transition_many(transitions)
        except StoreDataError as exc:
            transitions, refused_by_store = await self._isolate(transitions, stale, exc)
        self._settled_unwritten = None
        if self._settled:
            self._unconfirmed += self._settled
            self._settled = []
        self.flushes += 1
        if self._room is not None and self.backlog < self.max_buffer:
            self._room.set()
        await self._on_flushed(transitions, stale + refused_by_store)
        if self._unconfirmed:
            # The confirm runs while the next batch is acked and written: ack, write and
            # confirm in a row made a draining replica flush-bound, and its unflushed backlog
            # and RSS grew. One confirm at a time.
            previous, self._confirming = self._confirming, None
            if previous is not None:
                await previous
            self._confirming = asyncio.create_task(self._confirm(), name="tierq-confirm")

    async def _isolate(
        self, transitions: list[Transition], stale: list[str], error: Exception
    ) -> tuple[list[Transition], list[str]]:
        """Write ``transitions`` (refused as a whole with ``error``) in halves, recursively,
        dropping the single transitions still refused; return (written, refused as stale).

        Halves are written in order, so the transitions of one task keep their order. If the
        store becomes unavailable midway, what was written is reported and only the rest is
        kept for the retry, so nothing is written twice.
        """
        pending: list[tuple[list[Transition], Exception | None]] = [(transitions, error)]
        written: list[Transition] = []
        refused: list[str] = []
        rejected: set[str] = set()
        while pending:
            part, failure = pending.pop()
            if failure is None:
                try:
                    refused += await self._transition_many(part)
                except StoreDataError as exc:
                    failure = exc
                except Exception:
                    # Not the data: keep what is left for the whole-batch retry.
                    rest = [t for p, _ in reversed(pending) for t in p]
                    await self._partial(part + rest, stale, written, refused, rejected)
                    raise
                else:
                    written += part
                    continue
            if len(part) == 1:
                self._reject(part[0], failure)
                rejected.add(part[0].task_id)
                continue
            middle = len(part) // 2
            # A stack: the first half is pushed last so it is written first.
            pending.append((part[middle:], None))
            pending.append((part[:middle], None))
        self._drop_settled(rejected)
        return written, refused

    async def _partial(
        self,
        rest: list[Transition],
        stale: list[str],
        written: list[Transition],
        refused: list[str],
        rejected: set[str],
    ) -> None:
        """Isolation was cut short by an unavailable store: report what is durable, keep the
        rest (and the confirms still owed) for the retry."""
        self._drop_settled(rejected)
        self._settled_unwritten = (rest, [])
        if written or refused or stale:
            await self._on_flushed(written, stale + refused)

    def _reject(self, transition: Transition, error: Exception) -> None:
        self.rejected += 1
        if self._on_rejected is not None:
            self._on_rejected(transition.task_id)
        log.error(
            "record store refused the %s transition of task %s (attempt %d) for good; "
            "dropped: %s: %s",
            transition.state.value,
            transition.task_id,
            transition.attempt,
            type(error).__name__,
            error,
        )

    def _drop_settled(self, rejected: set[str]) -> None:
        # The record does not hold these outcomes: the dispatch tier must not forget them.
        if rejected and self._settled:
            self._settled = [i for i in self._settled if i not in rejected]

    async def _confirm(self) -> None:
        confirm = self._confirm_many
        ids, self._unconfirmed = self._unconfirmed, []
        if confirm is None:
            return
        try:
            await confirm(ids)
        except BaseException as exc:
            self._unconfirmed = (ids + self._unconfirmed)[-self.max_unconfirmed :]
            if not isinstance(exc, Exception):
                raise
            log.warning(
                "could not confirm %d recorded tasks with the dispatch tier (%s); "
                "retrying with the next flush",
                len(ids),
                exc,
            )

    def _take(self) -> tuple[list[Transition], list[tuple[tuple[str, int], Ack]]]:
        """The next batch: at most ``batch_size`` transitions, oldest first, with the acks
        of exactly those transitions (keyed, for a restore). Bounded so the record write's
        arguments (encoded on the event loop by the driver) never stall every other request;
        O(batch), not O(buffer)."""
        buffer = self._buffer
        if len(buffer) <= self._batch_size:
            keys = list(buffer)
        else:
            keys = list(itertools.islice(buffer, self._batch_size))
        transitions = [buffer.pop(key) for key in keys]
        acks = [(key, ack) for key in keys for ack in self._acks.pop(key, ())]
        if len(buffer) >= self._batch_size:
            self.wake()  # more than a batch left: flush again at once
        return transitions, acks

    def _restore(
        self, transitions: list[Transition], acks: list[tuple[tuple[str, int], Ack]]
    ) -> None:
        """Put a batch back in front of what arrived since. Re-put in their original order
        into an empty buffer, the batch's transitions get their original keys back; newer
        ones are re-keyed (a newer report may now follow an older one of the same attempt)
        and their acks move with them."""
        newer, newer_acks = self._buffer, self._acks
        self._buffer, self._acks = {}, {}
        for transition in transitions:
            self._put(transition)
        for key, ack in acks:
            self._acks.setdefault(key, []).append(ack)
        for old_key, transition in newer.items():
            new_key = self._put(transition)
            if old_key in newer_acks:
                self._acks.setdefault(new_key, []).extend(newer_acks[old_key])

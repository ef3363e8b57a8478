"""The two storage seams: the record store (system of record) and the dispatch tier.

The engine speaks only to these classes. Public methods here do the shared work (argument
checks, empty-batch short cuts, logging); each backend fills in the small ``_primitive``
methods. Every write is batch-first: a single task is a batch of one. Time is always passed in
by the caller (``now``), never read by a backend, so tests control the clock.

Backends never import metrics: ``tierq.storage.instrumented`` wraps any store once.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from tierq.model import (
    SEARCH_PATH_PART,
    SORT_FIELDS,
    TERMINAL_STATES,
    DependencyRelease,
    Execution,
    RecoveryReport,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
    Transition,
)
from tierq.storage.queues import QueueControl

log = logging.getLogger("tierq.storage")


# Rows per page of a full scan (recovery, dispatch rebuild): large enough to amortise the
# round trip, small enough that one page is a short query.
SCAN_PAGE = 5000


def _run_order(task: Task) -> tuple[int, float, str]:
    return task.sort_key


class StoreUnavailable(Exception):
    """The backend cannot be reached or refused the operation for a transient reason.

    The API maps it to 503 with Retry-After; the engine keeps its batches and retries.
    """


class GenerationChanged(StoreUnavailable):
    """The dispatch tier lost its data since the caller last looked (a new generation): its
    acks were not applied; it reclaims what it holds (``Dispatch.reclaim``) and acks again."""


class StoreDataError(Exception):
    """The store refused a value for good (a type or constraint violation): writing the same
    data again can never succeed. Only this error makes the engine set a write aside; any
    other failure is retried, because it may pass (a schema being migrated, a bug fixed by a
    restart)."""


@dataclass(frozen=True, slots=True)
class RecordCapabilities:
    """What a record-store backend can do, declared rather than described."""

    # Several processes may share the store (PostgreSQL); False means one process owns it.
    shared: bool
    # The most transitions one write should carry. A store whose writes all queue behind
    # one another (SQLite's single writer) keeps this small, so a client's write never waits
    # long behind a flush; a store that writes concurrently takes larger, cheaper batches.
    transition_batch: int = 10_000


class RecordStore(abc.ABC):
    """System of record: every task, every attempt, and the counters behind statistics."""

    capabilities: RecordCapabilities
    # Migrations the last ``open()`` applied (``tierq migrate`` reports them).
    migrations_applied: tuple[int, ...] = ()

    # ---- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes and release connections. Idempotent."""

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply numbered migrations not applied yet; return the numbers applied."""

    # ---- writes ----------------------------------------------------------------------------

    async def task_insert_many(self, tasks: Sequence[Task]) -> list[str]:
        """Insert new tasks in one transaction (one statement per table).

        Returns, index for index, the id each task is stored under: its own id, or the id of
        the task that already holds its ``idempotency_key`` (that task is not inserted again).
        Dependencies (``depends_on``) are stored with the task.
        """
        if not tasks:
            return []
        return await self._task_insert_many(tasks)

    async def task_transition_many(self, transitions: Sequence[Transition]) -> list[str]:
        """Apply state changes in one transaction; return the ids that were refused.

        A transition is refused when the stored task is terminal, or its stored attempt is
        greater than the transition's attempt (a stale lease). Refused ones change nothing.
        """
        if not transitions:
            return []
        rejected = await self._task_transition_many(transitions)
        if rejected:
            log.info("record store refused %d stale or terminal transitions", len(rejected))
        return rejected

    async def task_cancel_many(self, ids: Sequence[str], now: float) -> list[str]:
        """Cancel tasks that are pending, scheduled or queued; return the ids cancelled.

        Running tasks are cancelled by the engine (through their worker), not here.
        """
        if not ids:
            return []
        return await self._task_cancel_many(ids, now)

    async def task_retry_many(self, ids: Sequence[str], now: float) -> list[str]:
        """Replay failed or cancelled tasks: queued, due now, lease cleared, a fresh retry
        budget (``attempt_base = attempt``), ``last_error`` kept. Return the ids changed."""
        if not ids:
            return []
        return await self._task_retry_many(ids, now)

    async def task_claim(
        self,
        owner: str,
        limit: int,
        now: float,
        horizon: float = 0.0,
        skip_queues: Sequence[str] = (),
    ) -> list[Task]:
        """Lease up to ``limit`` unleased tasks to ``owner``: queued ones by run order, and
        scheduled ones due before ``now + horizon``, none of ``skip_queues``. Returns them
        with ``lease_owner`` set."""
        if limit <= 0:
            return []
        claimed = await self._task_claim(owner, limit, now, horizon, skip_queues)
        # In run order whatever order the backend read them in (UPDATE ... RETURNING and
        # SQLite's JSON reads promise none); the memory tier pushes them in this order.
        claimed.sort(key=_run_order)
        return claimed

    async def task_release(self, owner: str, ids: Sequence[str] | None = None) -> int:
        """Clear ``owner``'s leases on non-running tasks (all of them when ``ids`` is None)."""
        return await self._task_release(owner, ids)

    async def task_recover(self, now: float, owners: Sequence[str] | None = None) -> RecoveryReport:
        """After a crash: running tasks of ``owners`` (every owner when None) go back to
        queued (their open execution rows end as ``abandoned``) and their leases are cleared."""
        report = await self._task_recover(now, owners)
        if report.requeued_running or report.released_leases:
            log.warning(
                "recovered %d running tasks and %d leases",
                report.requeued_running,
                report.released_leases,
            )
        return report

    async def task_release_dependents(
        self, finished_ids: Sequence[str], now: float
    ) -> DependencyRelease:
        """Pending tasks whose dependencies have now all succeeded become queued (or
        scheduled when their run_at is later); those with a failed or cancelled dependency
        become cancelled. Only dependents of ``finished_ids`` are looked at."""
        if not finished_ids:
            return DependencyRelease()
        release = await self._task_release_dependents(finished_ids, now)
        release.ready.sort(key=_run_order)
        release.cancelled.sort()
        return release

    # ---- reads -----------------------------------------------------------------------------

    async def task_get_many(self, ids: Sequence[str], tenant: str | None = None) -> list[Task]:
        """The tasks found, in no particular order; unknown ids are skipped, and so are the
        tasks of another tenant than ``tenant`` (None: any tenant), in the query itself."""
        if not ids:
            return []
        return await self._task_get_many(ids, tenant)

    async def task_get(self, task_id: str, tenant: str | None = None) -> Task | None:
        found = await self.task_get_many([task_id], tenant)
        return found[0] if found else None

    async def task_list(self, flt: TaskFilter) -> TaskPage:
        """One page of ``flt``. The filter is checked here, once for every backend: the
        backends build their query from a filter they may trust."""
        if flt.size <= 0:
            raise ValueError("size must be positive")
        if flt.page < 0:
            raise ValueError("page must not be negative")
        if flt.sort_field not in SORT_FIELDS:
            raise ValueError(f"cannot sort by {flt.sort_field!r}; one of {SORT_FIELDS}")
        if flt.after_id is not None and flt.sort_field != "created_at":
            raise ValueError("after_id pages only the created_at sort")
        for path, _ in flt.payload:
            if not path or not all(SEARCH_PATH_PART.fullmatch(part) for part in path):
                raise ValueError(f"not a payload path: {'.'.join(path)!r}")
        return await self._task_list(flt)

    async def task_scan(
        self, states: tuple[TaskState, ...], page_size: int = SCAN_PAGE
    ) -> AsyncIterator[list[Task]]:
        """Every task in ``states``, oldest first, one page at a time (keyset paging on the
        time-ordered id, so rows committed meanwhile behind the cursor are not seen)."""
        after: str | None = None
        while True:
            page = await self.task_list(
                TaskFilter(
                    states=states,
                    sort_field="created_at",
                    descending=False,
                    size=page_size,
                    after_id=after,
                )
            )
            if page.items:
                yield page.items
            if not page.has_more or not page.items:
                return
            after = page.items[-1].id

    async def task_purge(self, cutoffs: Mapping[TaskState, float], limit: int) -> list[str]:
        """Delete up to ``limit`` finished tasks (their executions and dependency edges too)
        whose state is a key of ``cutoffs`` and that finished before that state's cutoff;
        the ids deleted. Counts stay exact. Retention's primitive: a background write that
        never holds up submissions. Backends walk only ids older than the cutoff (ids carry
        their minting time): a task whose id was minted ahead of its finish, by a clock that
        ran ahead, goes once the cutoff passes its id's time."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        wrong = [s for s in cutoffs if s not in TERMINAL_STATES]
        if wrong:
            raise ValueError(f"only finished tasks are purged, not {wrong[0].value}")
        if not cutoffs:
            return []
        return await self._task_purge(cutoffs, limit)

    async def task_counts(self, tenant: str | None = None) -> dict[TaskState, int]:
        """Tasks per state, every state present (0 where none), of ``tenant`` (None: all).
        All tenants, and the default tenant, from maintained counters; another tenant from
        an index of the non-default tenants' tasks (never a scan of the table)."""
        counts = await self._task_counts(tenant)
        return {state: counts.get(state, 0) for state in TaskState}

    async def execution_list(self, task_id: str) -> list[Execution]:
        """Every attempt of a task, oldest first."""
        return await self._execution_list(task_id)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        await self._ping()

    # ---- primitives each backend implements -------------------------------------------------

    @abc.abstractmethod
    async def _task_insert_many(self, tasks: Sequence[Task]) -> list[str]: ...

    @abc.abstractmethod
    async def _task_transition_many(self, transitions: Sequence[Transition]) -> list[str]: ...

    @abc.abstractmethod
    async def _task_cancel_many(self, ids: Sequence[str], now: float) -> list[str]: ...

    @abc.abstractmethod
    async def _task_retry_many(self, ids: Sequence[str], now: float) -> list[str]: ...

    @abc.abstractmethod
    async def _task_claim(
        self, owner: str, limit: int, now: float, horizon: float, skip: Sequence[str]
    ) -> list[Task]: ...

    @abc.abstractmethod
    async def _task_release(self, owner: str, ids: Sequence[str] | None) -> int: ...

    @abc.abstractmethod
    async def _task_recover(self, now: float, owners: Sequence[str] | None) -> RecoveryReport: ...

    @abc.abstractmethod
    async def _task_release_dependents(
        self, finished_ids: Sequence[str], now: float
    ) -> DependencyRelease: ...

    @abc.abstractmethod
    async def _task_get_many(self, ids: Sequence[str], tenant: str | None) -> list[Task]: ...

    @abc.abstractmethod
    async def _task_list(self, flt: TaskFilter) -> TaskPage: ...

    @abc.abstractmethod
    async def _task_counts(self, tenant: str | None) -> dict[TaskState, int]: ...

    @abc.abstractmethod
    async def _task_purge(self, cutoffs: Mapping[TaskState, float], limit: int) -> list[str]: ...

    @abc.abstractmethod
    async def _execution_list(self, task_id: str) -> list[Execution]: ...

    @abc.abstractmethod
    async def _ping(self) -> None: ...


# ---- dispatch tier --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchCapabilities:
    # Several replicas pull from the same queue (Redis); False for the in-process dispatcher.
    shared: bool
    # Leases expire with the owner's heartbeat and can be rescued by another replica.
    leases_expire: bool


@dataclass(frozen=True, slots=True)
class Ack:
    """How a leased attempt ended, as the dispatch tier needs to know it.

    ``attempt`` is the fencing token: the ack is refused unless the lease the dispatch tier
    holds for the task is ``owner``'s with this attempt.
    - ``state`` terminal: the lease ends; the task leaves the dispatch tier when
      ``confirm_many`` says its outcome is recorded (until then rescue would run it again).
    - ``state`` scheduled: back to the delayed set until ``run_at`` (retry with backoff).
    - ``state`` queued: back to the ready set now (hand-back at shutdown).
    ``started`` False: the attempt never started (a circuit breaker held the task back):
    ``attempt`` is still the lease's token, but the stored attempt stays one below it, so
    no attempt is spent.
    """

    task_id: str
    attempt: int
    state: TaskState
    run_at: float | None = None
    started: bool = True


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    owner: str
    last_heartbeat: float
    expires_at: float
    leased: int  # what rescue would take back: leases and unconfirmed terminal acks
    info: dict[str, object]


@dataclass(frozen=True, slots=True)
class RescuedLease:
    """A lease taken back from an owner whose heartbeat expired."""

    task_id: str
    attempt: int  # the attempt the dead owner held; the next run is attempt + 1
    owner: str


_ACKABLE_LIVE = frozenset({TaskState.SCHEDULED, TaskState.QUEUED})


class Dispatch(abc.ABC):
    """The queue replicas pull from. Leases carry the attempt as a fencing token.

    Every task handed to the dispatch tier is already durable in the record store; the
    dispatch tier may therefore lose everything (Redis restarted empty) and be rebuilt from
    the record store with ``enqueue_many`` (idempotent: a task already present is left as is).

    The public batch methods do the shared work (empty batches cost nothing, acks are
    checked) and call one primitive each (``_enqueue_many``, ...), which backends implement
    and may assume non-empty, valid input.
    """

    capabilities: DispatchCapabilities

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def enqueue_many(
        self, tasks: Sequence[Task], lease_owner: str | None, now: float, take_back: bool = True
    ) -> list[str]:
        """Add tasks. With ``lease_owner`` they are leased to it at once (it has room for them
        in its memory tier), except those of a queue with controls (paused, limits), which
        only a claim may hand out: their ids are returned. Tasks not leased go to the ready
        set if due, else to the delayed set. Tasks already known are not added twice; one acked
        as terminal and not yet confirmed is made live again only with ``take_back`` (an
        explicit retry; never a rebuild, whose read of the record tier may be older)."""
        if not tasks:
            return []
        return await self._enqueue_many(tasks, lease_owner, now, take_back)

    async def claim(
        self, owner: str, limit: int, now: float, skip_queues: Sequence[str] = ()
    ) -> list[Task]:
        """Promote due delayed tasks, then lease up to ``limit`` ready tasks to ``owner`` in
        run order (priority, run_at, arrival), none of ``skip_queues``, within each queue's
        controls (paused, max_running, rate: see ``set_controls``). Returned tasks carry
        their stored attempt; the lease is for attempt + 1. A task given a start slot by a
        queue's rate has its run_at moved to that slot."""
        if limit <= 0:
            return []
        return await self._claim(owner, limit, now, skip_queues)

    async def ack_many(
        self, owner: str, acks: Sequence[Ack], now: float, generation: str = ""
    ) -> list[str]:
        """Settle leased attempts; return the task ids refused (stale or foreign lease). An
        ack ends an attempt as terminal, or sends the task back as scheduled (a retry in
        backoff) or queued (handed back); any other state is a caller's bug (ValueError).
        With ``generation`` (the one the owner last saw), a dispatch tier that lost its data
        since raises GenerationChanged and applies nothing."""
        if not acks:
            return []
        for a in acks:
            if not (a.state.terminal or a.state in _ACKABLE_LIVE):
                raise ValueError(f"cannot ack task {a.task_id} as {a.state}")
        return await self._ack_many(owner, acks, now, generation)

    async def reclaim(self, owner: str, held: Sequence[tuple[Task, int]], now: float) -> list[str]:
        """After a data loss: lease to ``owner`` again the tasks it still holds, each for the
        token its next report will carry (taking a task back from the ready or delayed set
        where a rebuild put it). Returns the ids another owner has leased meanwhile (their
        copies here must not run, or their reports will be refused)."""
        if not held:
            return []
        return await self._reclaim(owner, held, now)

    async def confirm_many(self, owner: str, ids: Sequence[str]) -> None:
        """The record tier has these terminal outcomes: forget the tasks.

        Call after the record write of tasks ``owner`` acked as terminal (never refused).
        Until then the dispatch tier keeps them, and if ``owner`` dies first, ``rescue``
        returns them like leases, so an outcome lost with the process is run again rather
        than lost. Ids not acked by ``owner``, already confirmed, rescued or enqueued again
        since are left alone, so a retried or repeated confirm is harmless."""
        if ids:
            await self._confirm_many(owner, ids)

    async def cancel_many(self, ids: Sequence[str]) -> list[str]:
        """Remove not-leased tasks; return the ids removed. Leased ones are left alone."""
        if not ids:
            return []
        return await self._cancel_many(ids)

    async def announce_cancel(self, ids: Sequence[str]) -> None:
        """Tell every replica (the owners of leased ones among ``ids``) that these tasks were
        cancelled: a replica holding one drops it, or interrupts it if it is running."""
        if ids:
            await self._announce_cancel(ids)

    async def announce_schedules(self, ids: Sequence[str]) -> None:
        """Tell every replica that these schedules were created, edited or deleted (the
        leader reloads them at once instead of at its next full synchronisation)."""
        if ids:
            await self._announce_schedules(ids)

    async def release(self, owner: str, ids: Sequence[str]) -> int:
        """Hand back leased tasks that never started, to the ready set, attempt unchanged."""
        if not ids:
            return 0
        return await self._release(owner, ids)

    async def set_controls(self, controls: Sequence[QueueControl]) -> None:
        """Make every replica's claims obey these queues' controls: paused, ``max_running``
        across replicas, a start rate. A control with nothing set lifts them."""
        if controls:
            await self._set_controls(controls)

    async def announce_report(self, message: bytes) -> None:
        """Tell every replica that an outside worker reported an attempt of an ``external``
        task (the replica running that attempt finishes it; the others ignore it)."""
        await self._announce_report(message)

    async def announce_flow(self, message: str) -> None:
        """Tell every replica that flow control changed (``queue:<name>``, ``breaker:<key>``)."""
        await self._announce_flow(message)

    # ---- primitives: what a backend implements -------------------------------------------

    @abc.abstractmethod
    async def _set_controls(self, controls: Sequence[QueueControl]) -> None: ...

    @abc.abstractmethod
    async def _announce_flow(self, message: str) -> None: ...

    @abc.abstractmethod
    async def _announce_report(self, message: bytes) -> None: ...

    @abc.abstractmethod
    async def _enqueue_many(
        self, tasks: Sequence[Task], lease_owner: str | None, now: float, take_back: bool
    ) -> list[str]: ...

    @abc.abstractmethod
    async def _claim(
        self, owner: str, limit: int, now: float, skip: Sequence[str]
    ) -> list[Task]: ...

    @abc.abstractmethod
    async def _ack_many(
        self, owner: str, acks: Sequence[Ack], now: float, generation: str
    ) -> list[str]: ...

    @abc.abstractmethod
    async def _reclaim(
        self, owner: str, held: Sequence[tuple[Task, int]], now: float
    ) -> list[str]: ...

    @abc.abstractmethod
    async def _confirm_many(self, owner: str, ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    async def _cancel_many(self, ids: Sequence[str]) -> list[str]: ...

    @abc.abstractmethod
    async def _announce_cancel(self, ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    async def _announce_schedules(self, ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    async def _release(self, owner: str, ids: Sequence[str]) -> int: ...

    # ---- single calls, not batches ---------------------------------------------------------

    def listen_limit_waits(self, callback: Callable[[int], None]) -> None:  # noqa: B027
        """Call ``callback`` with how many ready tasks each claim left because of their
        queue's limits (the limiter's waits). A dispatch tier that enforces no limits in its
        claims (in process: the engine's gate does) never calls it."""

    @abc.abstractmethod
    def listen_flow(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` with every flow-control announcement (and with "" when some may
        have been missed: a lost subscription)."""

    @abc.abstractmethod
    def listen_report(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback`` with every report announced by any replica."""

    @abc.abstractmethod
    def listen_cancel(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback`` with the ids of every cancel announced by any replica."""

    @abc.abstractmethod
    def listen_schedules(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback`` with the ids of every schedule change announced by any replica;
        with an empty list when announcements may have been lost (resynchronise)."""

    @abc.abstractmethod
    async def heartbeat(self, owner: str, ttl: float, now: float, info: dict[str, object]) -> bool:
        """Keep ``owner``'s leases alive for ``ttl`` seconds from ``now``. Returns False when
        ``owner`` had been declared dead (its leases were rescued): whatever it still holds
        belongs to newer attempts now."""

    @abc.abstractmethod
    async def generation(self) -> tuple[str, bool]:
        """An id that changes whenever the dispatch tier loses its data (Redis restarted
        without persistence), and whether this call created it. The replica that creates a
        new generation rebuilds the dispatch tier from the record tier; every replica that
        sees the generation change drops the leases it held in the old one."""

    @abc.abstractmethod
    async def rescue(self, now: float) -> list[RescuedLease]:
        """Return the leases of owners whose heartbeat expired to the ready set, and the
        tasks they acked as terminal without ``confirm_many`` (as leases of that attempt)."""

    @abc.abstractmethod
    async def replicas(self, now: float) -> list[ReplicaInfo]:
        """Live replicas with their heartbeats and leased counts."""

    @abc.abstractmethod
    async def wait_for_work(self, max_wait: float) -> None:
        """Return when new ready work may exist, or after ``max_wait`` seconds."""

    @abc.abstractmethod
    async def depth(self) -> dict[str, int]:
        """Tasks in the dispatch tier: ``ready``, ``delayed``, ``leased``."""

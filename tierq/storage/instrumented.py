"""Instrumentation at the seam, once: wrappers that time every call into a record store or a
dispatch tier, count its errors and batch sizes. Backends import no metrics; the engine gets
wrapped objects from ``instrument_record_store`` / ``instrument_dispatch`` and cannot tell.

The record-store wrapper overrides the backend's primitives (so the shared logic of
``RecordStore``'s public methods still runs once, in the wrapper); the dispatch wrapper
delegates each method.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from tierq.metrics import Metrics
from tierq.model import (
    DependencyRelease,
    Execution,
    RecoveryReport,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
    Transition,
)
from tierq.storage.base import (
    Ack,
    Dispatch,
    RecordStore,
    ReplicaInfo,
    RescuedLease,
)
from tierq.storage.queues import QueueControl

T = TypeVar("T")


class _Timer:
    """Times calls of one tier; histogram children are looked up once per operation."""

    def __init__(self, metrics: Metrics, tier: str) -> None:
        self._metrics = metrics
        self._tier = tier
        self._observe: dict[str, Callable[[float], None]] = {}
        self._sizes: dict[str, Callable[[float], None]] = {}

    async def __call__(self, operation: str, call: Awaitable[T], size: int | None = None) -> T:
        observe = self._observe.get(operation)
        if observe is None:
            observe = self._metrics.store_seconds.labels(self._tier, operation).observe
            self._observe[operation] = observe
        if size is not None:
            sized = self._sizes.get(operation)
            if sized is None:
                sized = self._metrics.batch_size.labels(self._tier, operation).observe
                self._sizes[operation] = sized
            sized(size)
        started = time.perf_counter()
        try:
            return await call
        except Exception:
            self._metrics.store_errors.labels(self._tier, operation).inc()
            raise
        finally:
            observe(time.perf_counter() - started)


class InstrumentedRecordStore(RecordStore):
    def __init__(self, inner: RecordStore, metrics: Metrics) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self._timed = _Timer(metrics, "record")

    async def open(self) -> None:
        await self._timed("open", self.inner.open())
        self.migrations_applied = self.inner.migrations_applied

    async def close(self) -> None:
        await self._timed("close", self.inner.close())

    async def migrate(self) -> list[int]:
        return await self._timed("migrate", self.inner.migrate())

    async def _task_insert_many(self, tasks: Sequence[Task]) -> list[str]:
        return await self._timed("insert", self.inner._task_insert_many(tasks), len(tasks))

    async def _task_transition_many(self, transitions: Sequence[Transition]) -> list[str]:
        call = self.inner._task_transition_many(transitions)
        return await self._timed("transition", call, len(transitions))

    async def _task_cancel_many(self, ids: Sequence[str], now: float) -> list[str]:
        return await self._timed("cancel", self.inner._task_cancel_many(ids, now), len(ids))

    async def _task_retry_many(self, ids: Sequence[str], now: float) -> list[str]:
        return await self._timed("retry", self.inner._task_retry_many(ids, now), len(ids))

    async def _task_claim(
        self, owner: str, limit: int, now: float, horizon: float, skip: Sequence[str]
    ) -> list[Task]:
        return await self._timed("claim", self.inner._task_claim(owner, limit, now, horizon, skip))

    async def _task_release(self, owner: str, ids: Sequence[str] | None) -> int:
        return await self._timed("release", self.inner._task_release(owner, ids))

    async def _task_recover(self, now: float, owners: Sequence[str] | None) -> RecoveryReport:
        return await self._timed("recover", self.inner._task_recover(now, owners))

    async def _task_release_dependents(
        self, finished_ids: Sequence[str], now: float
    ) -> DependencyRelease:
        call = self.inner._task_release_dependents(finished_ids, now)
        return await self._timed("release_dependents", call, len(finished_ids))

    async def _task_get_many(self, ids: Sequence[str], tenant: str | None) -> list[Task]:
        return await self._timed("get", self.inner._task_get_many(ids, tenant))

    async def _task_list(self, flt: TaskFilter) -> TaskPage:
        return await self._timed("list", self.inner._task_list(flt))

    async def _task_purge(self, cutoffs: Mapping[TaskState, float], limit: int) -> list[str]:
        return await self._timed("purge", self.inner._task_purge(cutoffs, limit))

    async def _task_counts(self, tenant: str | None) -> dict[TaskState, int]:
        return await self._timed("counts", self.inner._task_counts(tenant))

    async def _execution_list(self, task_id: str) -> list[Execution]:
        return await self._timed("executions", self.inner._execution_list(task_id))

    async def _ping(self) -> None:
        await self._timed("ping", self.inner._ping())


class InstrumentedDispatch(Dispatch):
    def __init__(self, inner: Dispatch, metrics: Metrics) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self._timed = _Timer(metrics, "dispatch")

    async def open(self) -> None:
        await self._timed("open", self.inner.open())

    async def close(self) -> None:
        await self._timed("close", self.inner.close())

    async def _enqueue_many(
        self, tasks: Sequence[Task], lease_owner: str | None, now: float, take_back: bool
    ) -> list[str]:
        return await self._timed(
            "enqueue", self.inner._enqueue_many(tasks, lease_owner, now, take_back), len(tasks)
        )

    async def _claim(self, owner: str, limit: int, now: float, skip: Sequence[str]) -> list[Task]:
        return await self._timed("claim", self.inner._claim(owner, limit, now, skip))

    async def _ack_many(
        self, owner: str, acks: Sequence[Ack], now: float, generation: str
    ) -> list[str]:
        return await self._timed(
            "ack", self.inner._ack_many(owner, acks, now, generation), len(acks)
        )

    async def _reclaim(self, owner: str, held: Sequence[tuple[Task, int]], now: float) -> list[str]:
        return await self._timed("reclaim", self.inner._reclaim(owner, held, now), len(held))

    async def _confirm_many(self, owner: str, ids: Sequence[str]) -> None:
        await self._timed("confirm", self.inner._confirm_many(owner, ids), len(ids))

    async def _cancel_many(self, ids: Sequence[str]) -> list[str]:
        return await self._timed("cancel", self.inner._cancel_many(ids), len(ids))

    async def _announce_cancel(self, ids: Sequence[str]) -> None:
        await self._timed("announce_cancel", self.inner._announce_cancel(ids), len(ids))

    def listen_cancel(self, callback: Callable[[list[str]], None]) -> None:
        self.inner.listen_cancel(callback)

    async def _announce_schedules(self, ids: Sequence[str]) -> None:
        await self._timed("announce_schedules", self.inner._announce_schedules(ids), len(ids))

    def listen_schedules(self, callback: Callable[[list[str]], None]) -> None:
        self.inner.listen_schedules(callback)

    async def _release(self, owner: str, ids: Sequence[str]) -> int:
        return await self._timed("release", self.inner._release(owner, ids), len(ids))

    async def _set_controls(self, controls: Sequence[QueueControl]) -> None:
        await self._timed("set_controls", self.inner._set_controls(controls), len(controls))

    async def _announce_flow(self, message: str) -> None:
        await self._timed("announce_flow", self.inner._announce_flow(message))

    def listen_flow(self, callback: Callable[[str], None]) -> None:
        self.inner.listen_flow(callback)

    async def _announce_report(self, message: bytes) -> None:
        await self._timed("announce_report", self.inner._announce_report(message))

    def listen_report(self, callback: Callable[[bytes], None]) -> None:
        self.inner.listen_report(callback)

    def listen_limit_waits(self, callback: Callable[[int], None]) -> None:
        self.inner.listen_limit_waits(callback)

    async def heartbeat(self, owner: str, ttl: float, now: float, info: dict[str, object]) -> bool:
        return await self._timed("heartbeat", self.inner.heartbeat(owner, ttl, now, info))

    async def generation(self) -> tuple[str, bool]:
        return await self._timed("generation", self.inner.generation())

    async def rescue(self, now: float) -> list[RescuedLease]:
        return await self._timed("rescue", self.inner.rescue(now))

    async def replicas(self, now: float) -> list[ReplicaInfo]:
        return await self._timed("replicas", self.inner.replicas(now))

    async def wait_for_work(self, max_wait: float) -> None:
        # Waiting is not latency: not timed.
        await self.inner.wait_for_work(max_wait)

    async def depth(self) -> dict[str, int]:
        return await self._timed("depth", self.inner.depth())


def instrument_record_store(store: RecordStore, metrics: Metrics) -> RecordStore:
    return InstrumentedRecordStore(store, metrics)


def instrument_dispatch(dispatch: Dispatch, metrics: Metrics) -> Dispatch:
    return InstrumentedDispatch(dispatch, metrics)


__all__ = [
    "InstrumentedDispatch",
    "InstrumentedRecordStore",
    "instrument_dispatch",
    "instrument_record_store",
]

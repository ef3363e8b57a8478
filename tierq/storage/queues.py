"""Queue controls and queue statistics in the record tier.

A queue's controls (paused, ``max_running``, an execution rate) are stored here so they
survive restarts and every replica reads the same ones; the dispatch tier keeps a copy that
its claims consult (distributed), and each engine a cache (engine/flow/controls.py). A queue
needs no row to exist: a missing row means the configured defaults.

The results of bulk operations are kept here too, by (tenant, Idempotency-Key), so a retried
``POST /api/v1/tasks/cancel`` answers what the first call did instead of doing it again; a
call is recorded as begun before it runs, so a retry while it still runs is told so instead
of running it a second time.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class QueueControl:
    queue: str
    paused: bool = False
    max_running: int | None = None  # across every replica; None = no cap
    rate_limit: int | None = None  # tasks started per rate_per_s; None = no rate
    rate_per_s: float | None = None
    updated_at: float = 0.0

    @property
    def limited(self) -> bool:
        """Whether starts of this queue are counted (a cap or a rate)."""
        return self.max_running is not None or self.rate_limit is not None

    @property
    def interval_s(self) -> float | None:
        """Seconds between two starts at the rate, or None."""
        if self.rate_limit is None or self.rate_per_s is None:
            return None
        return self.rate_per_s / self.rate_limit


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Live tasks of one queue by state, and when the oldest queued one became due."""

    queue: str
    counts: dict[str, int]
    oldest_queued_at: float | None


class QueueStore(abc.ABC):
    async def controls(self) -> list[QueueControl]:
        """Every stored control, sorted by queue."""
        return sorted(await self._controls(), key=lambda c: c.queue)

    async def save_control(self, control: QueueControl) -> None:
        await self._save_control(control)

    async def depths(self, tenant: str | None = None) -> list[QueueDepth]:
        """Per queue: pending, scheduled, queued, running and failed counts (only states with
        tasks), and the run_at of the oldest queued task; ``tenant`` None = all tenants."""
        return sorted(await self._depths(tenant), key=lambda d: d.queue)

    async def begin_operation(self, tenant: str, key: str, now: float) -> bytes | None:
        """None: this call owns the key (it runs, then ``finish_operation`` or
        ``abandon_operation``); else the answer of the call that owns it: its JSON, or b""
        while it still runs."""
        return await self._begin_operation(tenant, key, now)

    async def finish_operation(self, tenant: str, key: str, answer: bytes) -> None:
        await self._finish_operation(tenant, key, answer)

    async def abandon_operation(self, tenant: str, key: str) -> None:
        """The call failed before it had an answer: a retry may run it."""
        await self._abandon_operation(tenant, key)

    async def forget_operations(self, before: float, running_before: float) -> int:
        """Delete answers kept since before ``before``, and marks of calls begun before
        ``running_before`` that never finished (their process died): a retry may run then."""
        return await self._forget_operations(before, running_before)

    @abc.abstractmethod
    async def _controls(self) -> Sequence[QueueControl]: ...

    @abc.abstractmethod
    async def _save_control(self, control: QueueControl) -> None: ...

    @abc.abstractmethod
    async def _depths(self, tenant: str | None) -> Sequence[QueueDepth]: ...

    @abc.abstractmethod
    async def _begin_operation(self, tenant: str, key: str, now: float) -> bytes | None: ...

    @abc.abstractmethod
    async def _finish_operation(self, tenant: str, key: str, answer: bytes) -> None: ...

    @abc.abstractmethod
    async def _abandon_operation(self, tenant: str, key: str) -> None: ...

    @abc.abstractmethod
    async def _forget_operations(self, before: float, running_before: float) -> int: ...


def depths_from_rows(rows: Sequence[Sequence[Any]]) -> list[QueueDepth]:
    """(queue, state, count, min run_at of queued) rows -> one QueueDepth per queue."""
    counts: dict[str, dict[str, int]] = {}
    oldest: dict[str, float] = {}
    for queue, state, count, first in rows:
        counts.setdefault(str(queue), {})[str(state)] = int(count)
        if state == "queued" and first is not None:
            oldest[str(queue)] = float(first)
    return [QueueDepth(q, c, oldest.get(q)) for q, c in counts.items()]

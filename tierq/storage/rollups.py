"""Per-minute rollups of finished tasks in the record tier: what ``/health/metrics`` and
``/api/v1/tasks/metrics`` read (throughput, failure rate, latency percentiles over hours)
without walking the tasks.

Each replica appends its own rows (one per minute and tenant it saw tasks of), so replicas
never contend for a row and a reader adds them up. The body is the engine's JSON
(``engine/rollups.py`` owns its format); the store keeps it opaque.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rollup:
    minute: int  # POSIX seconds at the start of the minute
    node: str
    tenant: str
    body: bytes  # JSON


class RollupStore(abc.ABC):
    async def add(self, rows: Sequence[Rollup]) -> None:
        """Append rows, in one statement."""
        if rows:
            await self._add(rows)

    async def read(self, since: float, until: float, tenant: str | None) -> list[Rollup]:
        """Rows of minutes starting in [since, until), of ``tenant`` (None: every tenant),
        oldest first."""
        return sorted(await self._read(since, until, tenant), key=lambda r: r.minute)

    async def forget(self, before: float) -> int:
        """Delete rows of minutes before ``before``; how many."""
        return await self._forget(before)

    @abc.abstractmethod
    async def _add(self, rows: Sequence[Rollup]) -> None: ...

    @abc.abstractmethod
    async def _read(self, since: float, until: float, tenant: str | None) -> Sequence[Rollup]: ...

    @abc.abstractmethod
    async def _forget(self, before: float) -> int: ...

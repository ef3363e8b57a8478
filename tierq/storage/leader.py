"""The leader seam: which one replica runs the cluster's singleton duties (firing schedules).

``acquire`` is called every renewal interval by whoever wants to lead: it takes the lease
when nobody holds it, renews it when the caller does, and returns a fencing token (it grows
with every change of leader) or None. A leader that cannot renew within its TTL must
stop; but nothing correct may rest on the lease alone: two leaders for a moment (a paused
process, a partition) must still be harmless, which is why a schedule fire is a
compare-and-set in the record store (storage/schedules.py).
"""

from __future__ import annotations

import abc


class Leader(abc.ABC):
    # How long a lease lasts without renewal; a dead leader is replaced within this.
    ttl_s: float

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect, if the backend has its own connection."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (not the lease: ``resign`` does)."""

    @abc.abstractmethod
    async def acquire(self, owner: str) -> int | None:
        """Take or renew the lease for ``owner``; its fencing token, or None if another
        holds it (or the backend cannot be reached)."""

    @abc.abstractmethod
    async def resign(self, owner: str) -> None:
        """Give the lease up now (graceful shutdown), if ``owner`` holds it."""


class AlwaysLeader(Leader):
    """One process owns the store (embedded): it always leads."""

    ttl_s = 0.0

    async def acquire(self, owner: str) -> int | None:
        return 1

    async def resign(self, owner: str) -> None:
        return None

"""The lease clock: until when this replica's leases are known to be alive.

Distributed, that is the time of the last heartbeat that found this replica registered, plus
the heartbeat TTL, less one heartbeat of margin. Workers start no task past it: a replica that
was frozen, or cannot reach Redis, may have had its leases rescued, and starting a task then
could duplicate a rescued attempt. Embedded leases never expire.
"""

from __future__ import annotations

import asyncio
import math


class LeaseClock:
    def __init__(self, ttl_s: float, heartbeat_s: float, expires: bool) -> None:
        self._margin_ttl = ttl_s - heartbeat_s
        self.deadline = 0.0 if expires else math.inf
        self._renewed: asyncio.Event | None = None  # created in the running loop

    def valid(self, now: float) -> bool:
        return now <= self.deadline

    def renew(self, checked_at: float) -> None:
        """A heartbeat sent at ``checked_at`` found this replica registered."""
        self.deadline = checked_at + self._margin_ttl
        if self._renewed is not None:
            self._renewed.set()

    async def wait_renewed(self) -> None:
        if self._renewed is None:
            self._renewed = asyncio.Event()
        self._renewed.clear()
        await self._renewed.wait()

"""The leader lease in Redis: one key with a TTL holding the leader and its fencing token,
taken and renewed by one script (lua/leader_acquire.lua), on the dispatch tier's client."""

from __future__ import annotations

import logging

from tierq.storage.base import StoreUnavailable
from tierq.storage.leader import Leader
from tierq.storage.redis.dispatch import RedisDispatch

log = logging.getLogger("tierq.storage")


class RedisLeader(Leader):
    def __init__(self, dispatch: RedisDispatch, name: str = "scheduler", ttl_s: float = 5.0):
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._dispatch = dispatch
        self.ttl_s = ttl_s
        glob = "{" + dispatch.keys.prefix + "}"
        self._lease = f"{glob}:leader:{name}"
        self._fence = f"{glob}:leader:{name}:fence"

    async def acquire(self, owner: str) -> int | None:
        d = self._dispatch
        command = d._eval(
            "leader_acquire", [self._lease, self._fence], [owner, int(self.ttl_s * 1000)]
        )
        try:
            (token,) = await d._run([command])
        except StoreUnavailable as exc:
            log.warning("leader lease: redis unreachable (%s)", exc)
            return None
        return None if token is None else int(token)

    async def resign(self, owner: str) -> None:
        d = self._dispatch
        try:
            await d._run([d._eval("leader_resign", [self._lease], [owner])])
        except StoreUnavailable as exc:
            log.warning("leader lease: could not resign (%s); it expires by itself", exc)

"""The shared rate limiter: every bucket of a call decided and charged by one Lua call
(lua/ratelimit.lua), so all replicas behind a load balancer draw from the same buckets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tierq.storage.base import StoreUnavailable
from tierq.storage.ratelimit import Bucket, Decision, RateLimiter
from tierq.storage.redis.core import TRANSIENT, connect, eval_script
from tierq.storage.redis.scripts import SCRIPTS

_SCRIPT = SCRIPTS["ratelimit"]


class RedisRateLimiter(RateLimiter):
    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._prefix = "{" + prefix + "}:rate:"
        self._client: Any = None

    async def open(self) -> None:
        if self._client is None:
            self._client = connect(self._url)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _acquire(self, buckets: Sequence[Bucket], cost: int, now: float) -> Decision:
        if self._client is None:
            raise StoreUnavailable("rate limiter is not open")
        keys = [self._prefix + b.key for b in buckets]
        args: list[Any] = [cost]
        for b in buckets:
            args += [repr(float(b.per_second)), b.burst]
        try:
            ok, remaining, reset_ms, retry_ms, burst, index = await eval_script(
                self._client, _SCRIPT, keys, *args
            )
        except TRANSIENT as exc:
            raise StoreUnavailable(f"redis rate limiter: {exc}") from exc
        return Decision(
            bool(ok), int(burst), int(remaining), reset_ms / 1000, retry_ms / 1000, int(index)
        )

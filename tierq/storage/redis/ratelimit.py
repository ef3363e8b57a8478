"""The shared rate limiter: all replicas draw from the same buckets in Redis.

Decisions are batched like group commit: the first call goes out at once, and every call
that arrives while a script call is in flight joins the next one, so a busy replica makes one
round trip (lua/ratelimit.lua) per batch of calls, not one per request.

What must stay true: calls are decided in arrival order; a failed round trip fails every
call of its batch (StoreUnavailable), never leaves one waiting; a caller's cancellation never
cancels the round trip its batch shares with others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tierq.storage.base import StoreUnavailable
from tierq.storage.ratelimit import Bucket, Decision, RateLimiter
from tierq.storage.redis.core import TRANSIENT, connect, eval_script
from tierq.storage.redis.scripts import SCRIPTS

_SCRIPT = SCRIPTS["ratelimit"]
_FIELDS = 6  # integers the script returns per call
# The most calls one script call decides (a batch beyond waits for the next).
MAX_BATCH = 500

Pending = tuple[Sequence[Bucket], int, "asyncio.Future[Decision]"]


class RedisRateLimiter(RateLimiter):
    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._prefix = "{" + prefix + "}:rate:"
        self._client: Any = None
        self._pending: list[Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def open(self) -> None:
        if self._client is None:
            self._client = connect(self._url)

    async def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            await asyncio.gather(sender, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _acquire(self, buckets: Sequence[Bucket], cost: int, now: float) -> Decision:
        if self._client is None:
            raise StoreUnavailable("rate limiter is not open")
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.append((buckets, cost, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="tierq-rate-limiter")
        # shield: a caller that gives up must not cancel the round trip others share.
        return await asyncio.shield(future)

    async def _send(self) -> None:
        while self._pending:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            try:
                decisions = await self._decide(batch)
            except Exception as exc:
                error = (
                    exc
                    if isinstance(exc, StoreUnavailable)
                    else StoreUnavailable(f"redis rate limiter: {exc}")
                )
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, _, future), decision in zip(batch, decisions, strict=True):
                if not future.done():
                    future.set_result(decision)

    async def _decide(self, batch: Sequence[Pending]) -> list[Decision]:
        index: dict[str, int] = {}
        args: list[Any] = [len(batch)]
        for buckets, cost, _ in batch:
            args += [cost, len(buckets)]
            for b in buckets:
                k = index.setdefault(self._prefix + b.key, len(index) + 1)
                args += [k, repr(float(b.per_second)), b.burst]
        try:
            flat = await eval_script(self._client, _SCRIPT, list(index), *args)
        except TRANSIENT as exc:
            raise StoreUnavailable(f"redis rate limiter: {exc}") from exc
        self.round_trips += 1
        return [
            Decision(
                bool(flat[i]),
                int(flat[i + 4]),
                int(flat[i + 1]),
                flat[i + 2] / 1000,
                flat[i + 3] / 1000,
                int(flat[i + 5]),
            )
            for i in range(0, len(flat), _FIELDS)
        ]

"""Rate limiting: GCRA (the generic cell rate algorithm: a token bucket kept as one number, the
theoretical arrival time, so no timer ever refills anything).

A call names every bucket it must pass (a tenant's, a key's) and its cost (a batch of N tasks
costs N); it is allowed only if every bucket allows it, and only then is any bucket charged,
all at once. The in-process limiter serves one process; the Redis one (storage/redis/
ratelimit.py, one Lua call) makes replicas share each bucket, so two replicas enforce one limit.

A cost above a bucket's burst is allowed once the bucket is full and leaves it in debt, so a
large batch is slowed to the rate instead of refused for ever.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass

# The in-process limiter forgets full buckets once it holds this many.
PRUNE_AT = 100_000


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int  # the burst of the tightest bucket
    remaining: int  # what the tightest bucket has left after this call
    reset_s: float  # until the tightest bucket is full again
    retry_after_s: float = 0.0  # when refused: until the call would be allowed
    bucket: int = 0  # the index of the tightest bucket among those asked for


UNLIMITED = Decision(True, 0, 0, 0.0)


def gcra(
    tat: float, now: float, bucket: Bucket, cost: int
) -> tuple[bool, float, int, float, float]:
    """One bucket's answer: (allowed, new tat, remaining, reset_s, retry_after_s)."""
    interval = 1.0 / bucket.per_second
    tolerance = bucket.burst * interval
    tat = max(tat, now)
    new_tat = tat + cost * interval
    allowance = max(tolerance, cost * interval)
    if new_tat - now <= allowance:
        remaining = max(0, math.floor((tolerance - (new_tat - now)) / interval + 1e-9))
        return True, new_tat, remaining, new_tat - now, 0.0
    remaining = max(0, math.floor((tolerance - (tat - now)) / interval + 1e-9))
    return False, tat, remaining, tat - now, new_tat - now - allowance


def combine(answers: Sequence[tuple[bool, int, float, float, int]]) -> Decision:
    """Many buckets' (allowed, remaining, reset, retry_after, burst) as one decision: refused
    if any refuses, reported for the tightest bucket (a refusing one first, then the one with
    the fewest left; the first of equals)."""
    allowed = all(a[0] for a in answers)
    index = min(range(len(answers)), key=lambda i: (answers[i][0], answers[i][1], i))
    tight = answers[index]
    retry = max(a[3] for a in answers) if not allowed else 0.0
    return Decision(allowed, tight[4], tight[1], tight[2], retry, index)


class RateLimiter(abc.ABC):
    async def acquire(self, buckets: Sequence[Bucket], cost: int, now: float) -> Decision:
        if not buckets:
            return UNLIMITED
        if cost < 1:
            raise ValueError("cost must be at least 1")
        return await self._acquire(buckets, cost, now)

    async def open(self) -> None:  # noqa: B027 - most limiters hold nothing to open
        pass

    async def close(self) -> None:  # noqa: B027
        pass

    @abc.abstractmethod
    async def _acquire(self, buckets: Sequence[Bucket], cost: int, now: float) -> Decision:
        """Decide and charge atomically. ``now`` is the caller's clock; a shared limiter may
        use its server's clock instead, so replicas' clocks cannot disagree."""


class InProcessRateLimiter(RateLimiter):
    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    async def _acquire(self, buckets: Sequence[Bucket], cost: int, now: float) -> Decision:
        answers = [gcra(self._tat.get(b.key, now), now, b, cost) for b in buckets]
        if all(a[0] for a in answers):
            for bucket, answer in zip(buckets, answers, strict=True):
                self._tat[bucket.key] = answer[1]
            if len(self._tat) > PRUNE_AT:
                self._tat = {k: t for k, t in self._tat.items() if t > now}
        return combine(
            [(a[0], a[2], a[3], a[4], b.burst) for a, b in zip(answers, buckets, strict=True)]
        )

"""One suite for both rate limiters (in-process, Redis Lua): GCRA bursts and refusals, several
buckets charged together or not at all, batch costs, and two limiter objects on one Redis
sharing a bucket (as two replicas do). Real time: the Redis limiter uses its server's clock."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.helpers import REDIS_URL, purge_redis_prefix
from tierq.storage.ratelimit import Bucket, InProcessRateLimiter, RateLimiter


@pytest.fixture(params=["inprocess", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "inprocess":
        yield InProcessRateLimiter()
        return
    from tierq.storage.redis.ratelimit import RedisRateLimiter

    prefix = f"test-rate-{uuid.uuid4().hex[:8]}"
    made = RedisRateLimiter(REDIS_URL, prefix)
    await made.open()
    try:
        yield made
    finally:
        await made.close()
        await purge_redis_prefix(prefix)


# Rates are slow (a cell every 10 s) wherever a test needs no refill between its calls, so a
# machine slow enough to take seconds between two calls still sees none.


async def test_burst_then_refusal_with_retry_after(limiter: RateLimiter) -> None:
    bucket = Bucket("k", per_second=0.1, burst=5)
    answers = [await limiter.acquire([bucket], 1, time.time()) for _ in range(6)]
    assert [a.allowed for a in answers] == [True] * 5 + [False]
    assert [a.remaining for a in answers[:5]] == [4, 3, 2, 1, 0]
    assert all(a.limit == 5 for a in answers)
    refused = answers[5]
    assert 9.0 < refused.retry_after_s <= 10.01
    assert 45.0 < refused.reset_s <= 50.01
    assert refused.remaining == 0


async def test_refill_at_the_rate(limiter: RateLimiter) -> None:
    bucket = Bucket("fast", per_second=50.0, burst=2)
    assert (await limiter.acquire([bucket], 2, time.time())).allowed
    assert not (await limiter.acquire([bucket], 1, time.time())).allowed
    time.sleep(0.05)  # 2.5 cells at 50/s
    assert (await limiter.acquire([bucket], 1, time.time())).allowed


async def test_every_bucket_or_none_is_charged(limiter: RateLimiter) -> None:
    roomy = Bucket("tenant", per_second=0.1, burst=10)
    tight = Bucket("key", per_second=0.1, burst=1)
    first = await limiter.acquire([roomy, tight], 1, time.time())
    assert first.allowed and (first.limit, first.remaining, first.bucket) == (1, 0, 1)
    for _ in range(3):
        refused = await limiter.acquire([roomy, tight], 1, time.time())
        assert not refused.allowed and refused.bucket == 1
    # The refused calls charged nothing: the roomy bucket still has 9 of 10.
    alone = await limiter.acquire([roomy], 1, time.time())
    assert alone.allowed and alone.remaining == 8


async def test_a_batch_costs_its_size_and_may_exceed_the_burst_once(limiter: RateLimiter) -> None:
    bucket = Bucket("batch", per_second=0.1, burst=10)
    answer = await limiter.acquire([bucket], 7, time.time())
    assert answer.allowed and answer.remaining == 3
    assert not (await limiter.acquire([bucket], 4, time.time())).allowed
    fresh = Bucket("big", per_second=0.1, burst=10)
    big = await limiter.acquire([fresh], 25, time.time())  # more than the burst, bucket full
    assert big.allowed and big.remaining == 0
    after = await limiter.acquire([fresh], 1, time.time())
    assert not after.allowed and after.retry_after_s > 140  # the debt is paid at the rate


async def test_no_bucket_is_unlimited(limiter: RateLimiter) -> None:
    assert (await limiter.acquire([], 1000, time.time())).allowed
    with pytest.raises(ValueError):
        await limiter.acquire([Bucket("x", 1.0, 1)], 0, time.time())


async def test_two_redis_limiters_share_one_bucket() -> None:
    from tierq.storage.redis.ratelimit import RedisRateLimiter

    prefix = f"test-rate-{uuid.uuid4().hex[:8]}"
    a, b = RedisRateLimiter(REDIS_URL, prefix), RedisRateLimiter(REDIS_URL, prefix)
    await a.open()
    await b.open()
    try:
        bucket = Bucket("shared", per_second=0.1, burst=4)
        allowed = [
            (await (a if i % 2 else b).acquire([bucket], 1, time.time())).allowed for i in range(8)
        ]
        assert allowed == [True] * 4 + [False] * 4
    finally:
        await a.close()
        await b.close()
        await purge_redis_prefix(prefix)


async def test_concurrent_calls_share_round_trips_and_keep_arrival_order() -> None:
    from tierq.storage.redis.ratelimit import RedisRateLimiter

    prefix = f"test-rate-{uuid.uuid4().hex[:8]}"
    limiter = RedisRateLimiter(REDIS_URL, prefix)
    await limiter.open()
    try:
        bucket = Bucket("crowd", per_second=0.01, burst=30)
        answers = await asyncio.gather(
            *(
                limiter.acquire([bucket, Bucket(f"own-{i}", 0.01, 100)], 1, time.time())
                for i in range(50)
            )
        )
        # Exactly the burst is allowed, to the first 30 callers in arrival order.
        assert [a.allowed for a in answers] == [True] * 30 + [False] * 20
        assert [a.remaining for a in answers[:30]] == list(range(29, -1, -1))
        assert all(a.bucket == 0 for a in answers[30:])  # the shared bucket refused them
        assert limiter.round_trips < 50
    finally:
        await limiter.close()
        await purge_redis_prefix(prefix)

"""One suite for the leader leases that can be shared (Redis key with TTL, PostgreSQL
advisory lock): one holder at a time, a token that grows with every new leader, hand-over
on resign and when the holder is gone. The embedded AlwaysLeader is checked alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.helpers import (
    POSTGRES_URL,
    REDIS_URL,
    postgres_store_in_fresh_schema,
    purge_redis_prefix,
)
from tierq.storage.leader import AlwaysLeader, Leader
from tierq.storage.postgres.leader import PostgresLeader
from tierq.storage.redis.dispatch import RedisDispatch
from tierq.storage.redis.leader import RedisLeader

MakeLeader = Callable[[], Awaitable[Leader]]


@pytest.fixture(params=["redis", "postgres"])
async def make_leader(request: pytest.FixtureRequest) -> AsyncIterator[MakeLeader]:
    made: list[Leader] = []
    dispatches: list[RedisDispatch] = []
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    schema_gen = postgres_store_in_fresh_schema() if request.param == "postgres" else None
    # A schema with the migrations applied (the fencing sequence is one of them).
    store = None if schema_gen is None else await schema_gen.__anext__()

    async def make() -> Leader:
        leader: Leader
        if store is None:
            dispatch = RedisDispatch(REDIS_URL, prefix=prefix)
            await dispatch.open()
            dispatches.append(dispatch)
            leader = RedisLeader(dispatch, ttl_s=1.0)
        else:
            leader = PostgresLeader(POSTGRES_URL, schema=store._schema, ttl_s=1.0)
        made.append(leader)
        return leader

    try:
        yield make
    finally:
        for leader in made:
            await leader.close()
        for dispatch in dispatches:
            await dispatch.close()
        if schema_gen is not None:
            await schema_gen.aclose()
        else:
            await purge_redis_prefix(prefix)


async def test_one_holder_and_renewal_keeps_the_token(make_leader: MakeLeader) -> None:
    a, b = await make_leader(), await make_leader()
    token = await a.acquire("a")
    assert token is not None and token >= 1
    assert await b.acquire("b") is None
    assert await a.acquire("a") == token  # renewed, same token
    assert await b.acquire("b") is None


async def test_resign_hands_over_with_a_greater_token(make_leader: MakeLeader) -> None:
    a, b = await make_leader(), await make_leader()
    first = await a.acquire("a")
    assert first is not None
    await a.resign("a")
    second = await b.acquire("b")
    assert second is not None and second > first
    assert await a.acquire("a") is None
    await b.resign("b")
    await b.resign("b")  # twice: harmless
    third = await a.acquire("a")
    assert third is not None and third > second


async def test_a_holder_that_is_gone_loses_the_lease(make_leader: MakeLeader) -> None:
    a, b = await make_leader(), await make_leader()
    first = await a.acquire("a")
    assert first is not None
    # Gone: its connection closed (PostgreSQL ends its session), or it stops renewing (Redis:
    # the TTL of 1 s runs out). Either way the other takes over within the TTL.
    await a.close()
    taken: int | None = None
    for _ in range(40):
        taken = await b.acquire("b")
        if taken is not None:
            break
        await asyncio.sleep(0.1)
    assert taken is not None and taken > first


async def test_always_leader_leads_alone() -> None:
    leader = AlwaysLeader()
    assert await leader.acquire("x") == 1
    await leader.resign("x")
    assert await leader.acquire("y") == 1

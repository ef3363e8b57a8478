"""One suite for every breaker store (in process, Redis): the state machine of
storage/breakers.py, driven with an explicit clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from tests.helpers import REDIS_URL, purge_redis_prefix
from tierq.storage.breakers import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerPolicy,
    BreakerStore,
    InProcessBreakerStore,
    Report,
)
from tierq.storage.redis.breakers import RedisBreakerStore
from tierq.storage.redis.dispatch import RedisDispatch

POLICY = BreakerPolicy(
    failure_ratio=0.5,
    min_calls=4,
    window="count",
    window_size=10,
    cooldown_s=2.0,
    cooldown_max_s=5.0,
    probes=2,
)
MakeStore = Callable[[BreakerPolicy], BreakerStore]


@pytest.fixture(params=["inprocess", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    dispatches: list[RedisDispatch] = []
    dispatch = None
    if request.param == "redis":
        dispatch = RedisDispatch(REDIS_URL, prefix=prefix)
        await dispatch.open()
        dispatches.append(dispatch)

    def make(policy: BreakerPolicy) -> BreakerStore:
        if dispatch is None:
            return InProcessBreakerStore(policy)
        return RedisBreakerStore(dispatch, policy)

    try:
        yield make
    finally:
        for d in dispatches:
            await d.close()
        if dispatch is not None:
            await purge_redis_prefix(prefix)


async def test_opens_at_the_failure_ratio_after_min_calls(make_store: MakeStore) -> None:
    store = make_store(POLICY)
    # 3 failures of 3: below min_calls, stays closed.
    (s,) = await store.report([Report("api", calls=3, failures=3)], 100.0)
    assert (s.state, s.calls, s.failures) == (CLOSED, 3, 3)
    (s,) = await store.report([Report("api", calls=1, failures=0)], 100.5)
    # 4 calls, 3 failures: 75% >= 50%.
    assert s.state == OPEN
    assert s.trips == 1
    assert s.opened_at == 100.5
    assert s.next_probe_at == pytest.approx(102.5)


async def test_successes_keep_it_closed_and_the_window_slides(make_store: MakeStore) -> None:
    store = make_store(POLICY)
    (s,) = await store.report([Report("api", calls=10, failures=4)], 1.0)
    assert (s.state, s.calls, s.failures) == (CLOSED, 10, 4)
    # The window keeps the last 10: 6 new successes push 6 old outcomes out.
    (s,) = await store.report([Report("api", calls=6, failures=0)], 2.0)
    assert s.state == CLOSED
    assert s.calls == 10
    assert s.failures < 4


async def test_time_window_forgets_old_seconds(make_store: MakeStore) -> None:
    policy = BreakerPolicy(failure_ratio=0.5, min_calls=4, window="time", window_s=10.0)
    store = make_store(policy)
    (s,) = await store.report([Report("t", calls=3, failures=3)], 1000.0)
    assert (s.calls, s.failures) == (3, 3)
    # 20 s later the old failures are out of the window: 1 failure of 3 stays closed.
    (s,) = await store.report([Report("t", calls=3, failures=1)], 1020.0)
    assert (s.state, s.calls, s.failures) == (CLOSED, 3, 1)
    (s,) = await store.report([Report("t", calls=2, failures=2)], 1021.0)
    assert s.state == OPEN


async def test_outcomes_while_open_are_ignored_and_probes_close_it(make_store: MakeStore) -> None:
    store = make_store(POLICY)
    await store.report([Report("api", calls=4, failures=4)], 10.0)
    # In-flight calls ending after the trip do not count.
    (s,) = await store.report([Report("api", calls=5, failures=0)], 10.5)
    assert s.state == OPEN
    # Before the cool-down: no probe.
    granted, s = await store.acquire_probe("api", 11.0)
    assert not granted and s.state == OPEN
    # After it: two probes, then none.
    assert (await store.acquire_probe("api", 12.1))[0]
    granted, s = await store.acquire_probe("api", 12.2)
    assert granted and s.state == HALF_OPEN and s.probes_granted == 2
    assert not (await store.acquire_probe("api", 12.3))[0]
    (s,) = await store.report([Report("api", probe_successes=1)], 12.5)
    assert s.state == HALF_OPEN
    (s,) = await store.report([Report("api", probe_successes=1)], 12.6)
    assert (s.state, s.trips, s.calls) == (CLOSED, 0, 0)


async def test_a_failed_probe_reopens_with_a_longer_cooldown(make_store: MakeStore) -> None:
    store = make_store(POLICY)
    await store.report([Report("api", calls=4, failures=4)], 10.0)
    assert (await store.acquire_probe("api", 12.0))[0]
    (s,) = await store.report([Report("api", probe_failures=1)], 12.5)
    assert (s.state, s.trips) == (OPEN, 2)
    assert s.next_probe_at == pytest.approx(16.5)  # 2 s doubled
    assert (await store.acquire_probe("api", 16.5))[0]
    (s,) = await store.report([Report("api", probe_failures=1)], 17.0)
    assert s.next_probe_at == pytest.approx(22.0)  # 8 s, capped at 5


async def test_lost_probes_expire(make_store: MakeStore) -> None:
    store = make_store(POLICY)
    await store.report([Report("api", calls=4, failures=4)], 10.0)
    assert (await store.acquire_probe("api", 12.0))[0]
    assert (await store.acquire_probe("api", 12.0))[0]
    assert not (await store.acquire_probe("api", 13.0))[0]
    # Nobody reported within a cool-down: a new phase grants again.
    granted, s = await store.acquire_probe("api", 14.1)
    assert granted and s.state == HALF_OPEN and s.probes_granted == 1


async def test_forced_open_until_reset(make_store: MakeStore) -> None:
    store = make_store(POLICY)
    s = await store.set_state("payments", OPEN, 50.0)
    assert s.state == OPEN and s.forced
    assert not (await store.acquire_probe("payments", 5000.0))[0]
    listed = await store.states(51.0)
    assert [(b.key, b.state, b.forced) for b in listed] == [("payments", OPEN, True)]
    s = await store.set_state("payments", CLOSED, 60.0)
    assert s.state == CLOSED and not s.forced
    assert (await store.acquire_probe("payments", 60.0))[0]
    assert await store.states(61.0) == []


async def test_one_batch_many_keys_and_listing(make_store: MakeStore) -> None:
    store = make_store(POLICY)
    states = await store.report(
        [Report("a", calls=4, failures=4), Report("b", calls=2, failures=0)], 1.0
    )
    assert [(s.key, s.state) for s in states] == [("a", OPEN), ("b", CLOSED)]
    listed = await store.states(1.5)
    assert [(s.key, s.state) for s in listed] == [("a", OPEN), ("b", CLOSED)]
    with pytest.raises(ValueError):
        await store.set_state("a", HALF_OPEN, 2.0)


async def test_two_clients_share_one_breaker(make_store: MakeStore) -> None:
    one, two = make_store(POLICY), make_store(POLICY)
    if isinstance(one, InProcessBreakerStore):
        two = one  # in process, "shared" means the one object
    await one.report([Report("api", calls=2, failures=2)], 1.0)
    (s,) = await two.report([Report("api", calls=2, failures=2)], 1.1)
    assert s.state == OPEN
    assert not (await one.acquire_probe("api", 1.2))[0]

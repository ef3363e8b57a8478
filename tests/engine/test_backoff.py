"""Properties of ``retry_delay``: the n-th retry waits in [d/2, d], d = min(max, base*2**(n-1))."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierq.engine.backoff import retry_delay

bases = st.floats(min_value=0.0, max_value=60.0, allow_nan=False)
caps = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False)
numbers = st.integers(min_value=1, max_value=200)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def ceiling(n: int, base: float, cap: float) -> float:
    return min(cap, base * 2.0 ** min(n - 1, 1000))


@given(n=numbers, base=bases, extra=caps, seed=seeds)
def test_delay_within_half_and_full_step(n: int, base: float, extra: float, seed: int) -> None:
    cap = base + extra  # settings guarantee retry_max >= retry_base
    d = ceiling(n, base, cap)
    delay = retry_delay(n, base, cap, random.Random(seed))
    assert d / 2 - 1e-9 * max(1.0, d) <= delay <= d + 1e-9 * max(1.0, d)


@given(n=numbers, base=bases, extra=caps, seed=seeds)
def test_never_above_max(n: int, base: float, extra: float, seed: int) -> None:
    cap = base + extra
    assert retry_delay(n, base, cap, random.Random(seed)) <= cap * (1 + 1e-12)


@given(n=st.integers(min_value=1, max_value=60), base=st.floats(0.001, 10.0), extra=caps)
def test_ceiling_is_monotone(n: int, base: float, extra: float) -> None:
    # The extremes of the random draw (r -> 1) bound the ceiling: the ceiling of retry n+1 is
    # never below that of retry n.
    cap = base + extra

    class Top(random.Random):
        def random(self) -> float:
            return 1.0

    class Bottom(random.Random):
        def random(self) -> float:
            return 0.0

    assert retry_delay(n + 1, base, cap, Top()) >= retry_delay(n, base, cap, Top())
    assert retry_delay(n + 1, base, cap, Bottom()) >= retry_delay(n, base, cap, Bottom())
    assert retry_delay(n, base, cap, Top()) == pytest.approx(ceiling(n, base, cap))
    assert retry_delay(n, base, cap, Bottom()) == pytest.approx(ceiling(n, base, cap) / 2)


@given(n=st.integers(min_value=1024, max_value=10**18), base=st.floats(0.001, 10.0), seed=seeds)
def test_huge_retry_numbers_do_not_overflow(n: int, base: float, seed: int) -> None:
    cap = 300.0
    delay = retry_delay(n, base, cap, random.Random(seed))
    assert math.isfinite(delay)
    assert cap / 2 <= delay <= cap


@given(n=st.integers(max_value=0))
def test_retry_number_below_one_is_refused(n: int) -> None:
    with pytest.raises(ValueError):
        retry_delay(n, 1.0, 10.0)


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    delays = {round(retry_delay(3, 1.0, 100.0, rng), 6) for _ in range(50)}
    assert len(delays) > 40

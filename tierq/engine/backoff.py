"""Retry delays: exponential back-off with jitter.

The n-th retry (n >= 1) waits a random time in [d/2, d] where d = min(max, base * 2**(n-1)):
never less than half the exponential step (so retries do spread out), never more than the cap
(so a task is never parked forever), and randomised so a burst of failures does not retry in
lockstep. Property tests in tests/engine/test_backoff.py hold it to this.
"""

from __future__ import annotations

import math
import random


def retry_delay(
    retry_number: int, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    # ldexp is exact for any exponent; past the float range the step is simply "above the cap".
    try:
        step = math.ldexp(base_s, retry_number - 1)
    except OverflowError:
        step = math.inf
    ceiling = min(max_s, step)
    r = (rng or random).random()
    return ceiling / 2.0 + r * (ceiling / 2.0)

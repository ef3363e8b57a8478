"""When a notification is tried again: exponential backoff with jitter, or the receiver's own
``Retry-After``, never past the retry horizon."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime


def next_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Delay before attempt ``attempt + 1``: base x 2^(attempt-1), capped, with jitter (a
    random half to all of it, so receivers that came back are not hit by every sender at
    once)."""
    ceiling = min(max_s, base_s * 2.0 ** min(max(attempt - 1, 0), 40))
    return ceiling * random.uniform(0.5, 1.0)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number, or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

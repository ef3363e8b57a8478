"""Building a large batch's arguments off the event loop.

Turning 1,000 tasks into column arrays or script arguments is milliseconds of pure Python. On
the loop, every other request waits for it; in a worker thread, the interpreter hands the GIL
back to the loop every switch interval (0.5 ms under ``tierq serve``), so small requests are
served in between. Small batches stay on the loop: a thread hop costs more than they do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this many items a batch is built inline.
OFFLOAD_MIN_ITEMS = 256


async def build(fn: Callable[[Sequence[T]], R], items: Sequence[T]) -> R:
    """``fn(items)``, in a worker thread when ``items`` is large. ``items`` must not be
    changed by anyone until this returns."""
    if len(items) < OFFLOAD_MIN_ITEMS:
        return fn(items)
    return await asyncio.to_thread(fn, items)

"""Time-ordered task ids in the UUIDv7 layout (RFC 9562).

48 bits of Unix milliseconds, then a 12-bit counter (monotonic within a millisecond in this
process), then 62 random bits. Ids sort by creation time, so "newest first" is an index scan on
the primary key, and two ids made by this process never compare out of order.

The random bits only keep replicas apart (within a process, time + counter are unique), so they
come from a PRNG seeded once from the OS, not from a getrandom() call per id: on the submit
path that syscall was a fifth of the event loop's time. Ids are identifiers, not secrets.
"""

from __future__ import annotations

import os
import random
import re
import time

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

_last_ms = 0
_counter = 0
_random_bits = random.Random(os.urandom(32)).getrandbits


def _reseed() -> None:
    # A forked child must not repeat its parent's sequence.
    global _random_bits
    _random_bits = random.Random(os.urandom(32)).getrandbits


os.register_at_fork(after_in_child=_reseed)


def new_id(now: float | None = None) -> str:
    global _last_ms, _counter
    ms = int((time.time() if now is None else now) * 1000)
    if ms <= _last_ms:
        ms = _last_ms
        _counter += 1
        if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
            ms += 1
            _counter = 0
    else:
        _counter = 0
    _last_ms = ms
    rand = _random_bits(62)
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_ids(count: int, now: float | None = None) -> list[str]:
    return [new_id(now) for _ in range(count)]


def is_valid_id(text: str) -> bool:
    return bool(_UUID_RE.match(text))


def id_time(task_id: str) -> float:
    """The creation time (seconds) encoded in an id."""
    return int(task_id[:8] + task_id[9:13], 16) / 1000.0

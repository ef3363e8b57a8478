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
# The ids are formatted from cached pieces: ``f"{value:032x}"`` of the whole 128-bit value
# was a third of the submit path's id cost. The time part changes once per millisecond; the
# variant bit (top of the last 64) makes ``hex()`` of the random half exactly 16 digits.
_HEX3 = tuple(f"{i:03x}" for i in range(0x1000))
_VARIANT = 0b10 << 62


def _time_prefix(ms: int) -> str:
    """``tttttttt-tttt-7``: the 48-bit millisecond time and the version digit."""
    h = f"{ms:012x}"
    return f"{h[:8]}-{h[8:]}-7"


_prefix = _time_prefix(0)


def _reseed() -> None:
    # A forked child must not repeat its parent's sequence.
    global _random_bits
    _random_bits = random.Random(os.urandom(32)).getrandbits


os.register_at_fork(after_in_child=_reseed)


def id_floor(at: float) -> str:
    """The smallest id a task created at ``at`` (or later) can have: ``id < id_floor(t)``
    holds for every task created before ``t``."""
    return f"{_time_prefix(int(at * 1000))}000-8000-000000000000"


def new_id(now: float | None = None) -> str:
    global _last_ms, _counter, _prefix
    ms = int((time.time() if now is None else now) * 1000)
    if ms <= _last_ms:
        _counter += 1
        if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
            _last_ms += 1
            _counter = 0
            _prefix = _time_prefix(_last_ms)
    else:
        _last_ms = ms
        _counter = 0
        _prefix = _time_prefix(ms)
    tail = hex(_VARIANT | _random_bits(62))  # "0x" + 16 digits
    return f"{_prefix}{_HEX3[_counter]}-{tail[2:6]}-{tail[6:]}"


def is_valid_id(text: str) -> bool:
    return bool(_UUID_RE.match(text))

"""Key names and the sort encoding of the Redis dispatch tier.

Every key of one queue shares the hash tag ``{prefix:queue}`` so a Lua script touching them
stays inside one Redis Cluster slot; keys spanning queues (the queue set, the replicas) share
``{prefix}``. Nothing here talks to Redis.

Ready order is (priority desc, run_at asc, id asc) and must hold exactly, for any int64
priority and any float run_at: a zset score (a double, 53 bits of mantissa) cannot carry all
three, so the ready set gives every member score 0 and lets Redis order equal scores by the
member bytes. A member is::

    16 hex digits  2**63 - 1 - priority   (higher priority -> smaller, sorts first)
    16 hex digits  the IEEE-754 bits of run_at, mapped so unsigned order == float order
    the task id    (time-ordered UUIDv7 text, so lexicographic order == arrival order)

The delayed set reuses the same member with score run_at, so promotion needs no lookup.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PRIORITY_MIN = -(2**63)
PRIORITY_MAX = 2**63 - 1
_SIGN = 1 << 63
_MASK = (1 << 64) - 1
# Where the id starts in a member (Lua's member_id uses the same offset, 1-based: 33).
ID_OFFSET = 32


def _float_key(value: float) -> int:
    """An unsigned 64-bit integer whose order is the order of the floats (IEEE-754 trick)."""
    bits = int(struct.unpack(">Q", struct.pack(">d", value))[0])
    return (~bits & _MASK) if bits & _SIGN else (bits | _SIGN)


def _float_from_key(key: int) -> float:
    bits = (key & ~_SIGN) if key & _SIGN else (~key & _MASK)
    (value,) = struct.unpack(">d", struct.pack(">Q", bits))
    return float(value)


def run_at_hex(run_at: float) -> str:
    return f"{_float_key(run_at):016x}"


def run_at_from_member(member: str | bytes) -> float:
    return _float_from_key(int(member[16:32], 16))


def member(priority: int, run_at: float, task_id: str) -> str:
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority {priority} is outside the 64-bit range")
    return f"{PRIORITY_MAX - priority:016x}{_float_key(run_at):016x}{task_id}"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue. Field order is the KEYS order the Lua scripts expect."""

    ready: str  # zset, score 0, member as above
    delayed: str  # zset, score run_at, member as above
    lease: str  # hash id -> "owner|token"
    body: str  # hash id -> task JSON (as enqueued; attempt and run_at live in meta)
    meta: str  # hash id -> "attempt|member"
    control: str  # hash: paused, max_running, interval, tat (engine/flow/controls.py)
    tag: str  # "{prefix:queue}", the base of per-owner keys

    def owned(self, owner: str) -> str:
        """Set of ids ``owner`` leases in this queue (what rescue walks)."""
        return f"{self.tag}:owned:{owner}"

    def acked(self, owner: str) -> str:
        """Hash id -> token of tasks ``owner`` acked as terminal whose outcome may not be in
        the record tier yet: body and meta stay until ``confirm``; rescue re-runs them."""
        return f"{self.tag}:acked:{owner}"

    @property
    def core(self) -> list[str]:
        return [self.ready, self.delayed, self.lease, self.body, self.meta]


class Keys:
    def __init__(self, prefix: str) -> None:
        if not prefix or any(c in prefix for c in "{}*?[]\\"):
            raise ValueError(f"prefix {prefix!r} must be non-empty without braces or globs")
        self.prefix = prefix
        glob = "{" + prefix + "}"
        self.queues = f"{glob}:queues"  # set of queue names
        self.replicas = f"{glob}:replicas"  # zset owner -> heartbeat expiry (injected clock)
        self.replica_info = f"{glob}:replica_info"  # hash owner -> JSON
        self.dead = f"{glob}:dead"  # zset owner -> when it was declared dead
        self.generation = f"{glob}:generation"  # changes when Redis lost its data
        self.wake_channel = f"{prefix}:wake"
        self.cancel_channel = f"{prefix}:cancel"
        self.schedules_channel = f"{prefix}:schedules"
        self.flow_channel = f"{prefix}:flow"
        self.report_channel = f"{prefix}:report"
        self._queue_cache: dict[str, QueueKeys] = {}

    def replica(self, owner: str) -> str:
        """Per-owner key with a real TTL: for humans and cleanup, never read by rescue."""
        return "{" + self.prefix + "}:replica:" + owner

    def queue(self, name: str) -> QueueKeys:
        keys = self._queue_cache.get(name)
        if keys is None:
            tag = "{" + self.prefix + ":" + name + "}"
            keys = QueueKeys(
                ready=f"{tag}:ready",
                delayed=f"{tag}:delayed",
                lease=f"{tag}:lease",
                body=f"{tag}:body",
                meta=f"{tag}:meta",
                control=f"{tag}:control",
                tag=tag,
            )
            self._queue_cache[name] = keys
        return keys

"""Circuit breaker state: where it lives, and the one state machine every backend follows.

A breaker is named by a key (a task type, an ``http`` target host, or a key a task names).
Closed, it counts outcomes over a sliding window (the last N calls, or the last N seconds);
when at least ``min_calls`` are in the window and the failure ratio reaches the threshold, it
opens for a cool-down that doubles with each trip in a row (capped). Once the cool-down is
over, ``acquire_probe`` grants up to ``probes`` permits (half-open): a probe's failure opens
it again, ``probes`` successes close it. Outcomes that are not probes are ignored while the
breaker is not closed: they are calls that started before it opened.

An operator may force a breaker open (it stays open, no probes, until reset) or reset it.

The in-process store here serves one process; ``storage/redis/breakers.py`` keeps the same
machine in Redis (one Lua call per batch of reports), so one replica's failures open the
breaker for all. Both run the conformance tests in tests/storage/test_breakers.py.

What must stay true: a report batch is applied atomically per key; the cool-down and probe
times only come from the caller's ``now`` (an injected clock); states returned are the ones
after the call.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

from tierq.config import Settings

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_ratio: float = 0.5
    min_calls: int = 10
    window: str = "count"  # "count": the last window_size calls; "time": the last window_s
    window_size: int = 20
    window_s: float = 30.0
    cooldown_s: float = 5.0
    cooldown_max_s: float = 300.0
    probes: int = 3

    @classmethod
    def of(cls, settings: Settings) -> BreakerPolicy:
        return cls(
            failure_ratio=settings.breaker_failure_ratio,
            min_calls=settings.breaker_min_calls,
            window=settings.breaker_window,
            window_size=settings.breaker_window_size,
            window_s=settings.breaker_window_s,
            cooldown_s=settings.breaker_cooldown_s,
            cooldown_max_s=settings.breaker_cooldown_max_s,
            probes=settings.breaker_probes,
        )

    def cooldown(self, trips: int) -> float:
        """The open period after ``trips`` trips in a row (1 = the first)."""
        return float(min(self.cooldown_max_s, self.cooldown_s * 2 ** max(0, min(trips - 1, 30))))


@dataclass(frozen=True, slots=True)
class Report:
    """What one batch saw of one key: ordinary calls, and the probes' outcomes."""

    key: str
    calls: int = 0
    failures: int = 0
    probe_successes: int = 0
    probe_failures: int = 0


@dataclass(frozen=True, slots=True)
class BreakerState:
    key: str
    state: str
    calls: int  # in the window (closed), else 0
    failures: int
    trips: int  # trips in a row (0 when closed)
    opened_at: float | None
    next_probe_at: float | None  # open: when probes may start; half-open: when they expire
    forced: bool = False
    probes_granted: int = 0
    probe_successes: int = 0


class BreakerStore(abc.ABC):
    """Where breaker state lives. Public methods validate; backends fill the primitives."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect, if the backend has its own connection."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def report(self, reports: Sequence[Report], now: float) -> list[BreakerState]:
        """Apply one batch of outcomes (one call however many keys); the keys' states."""
        reports = [r for r in reports if r.calls or r.probe_successes or r.probe_failures]
        if not reports:
            return []
        return await self._report(reports, now)

    async def acquire_probe(self, key: str, now: float) -> tuple[bool, BreakerState]:
        """May a task of ``key`` run now as a probe? Opens the half-open phase when the
        cool-down is over; grants at most ``probes`` permits per phase (a phase whose probes
        never report expires after one more cool-down, and grants again)."""
        return await self._acquire_probe(key, now)

    async def states(self, now: float) -> list[BreakerState]:
        """Every breaker that has seen calls lately or is not closed, sorted by key."""
        return sorted(await self._states(now), key=lambda s: s.key)

    async def set_state(self, key: str, state: str, now: float) -> BreakerState:
        """Operator: ``closed`` resets the breaker; ``open`` forces it open until reset."""
        if state not in (CLOSED, OPEN):
            raise ValueError(f"a breaker can be set closed or open, not {state!r}")
        return await self._set_state(key, state, now)

    @abc.abstractmethod
    async def _report(self, reports: Sequence[Report], now: float) -> list[BreakerState]: ...

    @abc.abstractmethod
    async def _acquire_probe(self, key: str, now: float) -> tuple[bool, BreakerState]: ...

    @abc.abstractmethod
    async def _states(self, now: float) -> list[BreakerState]: ...

    @abc.abstractmethod
    async def _set_state(self, key: str, state: str, now: float) -> BreakerState: ...


@dataclass(slots=True)
class _Machine:
    """One key's breaker, in process."""

    state: str = CLOSED
    outcomes: list[int] = field(default_factory=list)  # count window: 1 = failure
    buckets: dict[int, list[int]] = field(default_factory=dict)  # time window: s -> [c, f]
    trips: int = 0
    opened_at: float | None = None
    next_probe_at: float | None = None
    forced: bool = False
    granted: int = 0
    probe_ok: int = 0

    def window(self, policy: BreakerPolicy, now: float) -> tuple[int, int]:
        if policy.window == "count":
            return len(self.outcomes), sum(self.outcomes)
        oldest = int(now - policy.window_s)
        for second in [s for s in self.buckets if s <= oldest]:
            del self.buckets[second]
        return (
            sum(b[0] for b in self.buckets.values()),
            sum(b[1] for b in self.buckets.values()),
        )

    def add(self, policy: BreakerPolicy, calls: int, failures: int, now: float) -> None:
        if policy.window == "count":
            # Failures first: within one batch the order is unknown, and the newer end of
            # the window is what survives a trim.
            self.outcomes += [1] * failures + [0] * (calls - failures)
            del self.outcomes[: max(0, len(self.outcomes) - policy.window_size)]
        else:
            bucket = self.buckets.setdefault(int(now), [0, 0])
            bucket[0] += calls
            bucket[1] += failures

    def trip(self, policy: BreakerPolicy, now: float) -> None:
        self.state = OPEN
        self.trips += 1
        self.opened_at = now
        self.next_probe_at = now + policy.cooldown(self.trips)
        self.outcomes, self.buckets = [], {}
        self.granted = self.probe_ok = 0

    def reset(self) -> None:
        self.state = CLOSED
        self.trips = 0
        self.opened_at = self.next_probe_at = None
        self.forced = False
        self.outcomes, self.buckets = [], {}
        self.granted = self.probe_ok = 0

    def snapshot(self, key: str, policy: BreakerPolicy, now: float) -> BreakerState:
        calls, failures = self.window(policy, now) if self.state == CLOSED else (0, 0)
        return BreakerState(
            key,
            self.state,
            calls,
            failures,
            self.trips,
            self.opened_at,
            self.next_probe_at,
            self.forced,
            self.granted,
            self.probe_ok,
        )


class InProcessBreakerStore(BreakerStore):
    """One process's breakers (embedded mode)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        super().__init__(policy)
        self._machines: dict[str, _Machine] = {}

    async def _report(self, reports: Sequence[Report], now: float) -> list[BreakerState]:
        policy = self.policy
        out: list[BreakerState] = []
        for r in reports:
            m = self._machines.setdefault(r.key, _Machine())
            if m.state == CLOSED and r.calls:
                m.add(policy, r.calls, r.failures, now)
                calls, failures = m.window(policy, now)
                if calls >= policy.min_calls and failures >= policy.failure_ratio * calls:
                    m.trip(policy, now)
            elif m.state == HALF_OPEN:
                if r.probe_failures:
                    m.trip(policy, now)
                else:
                    m.probe_ok += r.probe_successes
                    if m.probe_ok >= policy.probes:
                        m.reset()
            out.append(m.snapshot(r.key, policy, now))
        return out

    async def _acquire_probe(self, key: str, now: float) -> tuple[bool, BreakerState]:
        policy = self.policy
        m = self._machines.setdefault(key, _Machine())
        granted = False
        if m.state == CLOSED:
            granted = True
        elif m.forced:
            granted = False
        elif now >= (m.next_probe_at or 0.0):  # open or half-open, its time has come
            # A new phase: the cool-down is over (or the last phase's probes never reported).
            m.state = HALF_OPEN
            m.granted, m.probe_ok = 1, 0
            m.next_probe_at = now + policy.cooldown(m.trips)
            granted = True
        elif m.state == HALF_OPEN and m.granted < policy.probes:
            m.granted += 1
            granted = True
        return granted, m.snapshot(key, policy, now)

    async def _states(self, now: float) -> list[BreakerState]:
        return [
            m.snapshot(key, self.policy, now)
            for key, m in self._machines.items()
            if m.state != CLOSED or m.outcomes or m.buckets
        ]

    async def _set_state(self, key: str, state: str, now: float) -> BreakerState:
        m = self._machines.setdefault(key, _Machine())
        if state == CLOSED:
            m.reset()
        else:
            m.trip(self.policy, now)
            m.forced = True
        return m.snapshot(key, self.policy, now)

"""Per-minute rollups of task outcomes (a subscriber of the event bus), kept in the record
tier so that throughput, failure rate and latency percentiles over hours are read from a
few rows per minute instead of from the tasks: ``/health/metrics?hours=24`` and
``/api/v1/tasks/metrics?from_time=...``.

What is counted per (minute, tenant): submitted, started, succeeded, failed (for good),
cancelled, and two histograms: wait (due time to start) and run time (of succeeded
attempts), in fixed log-spaced buckets. Percentiles are read from the histograms: a figure
is the upper bound of the bucket it falls in, so "p99 0.05 s" means 99% took at most 50 ms.

What must stay true: each replica writes only the minutes it counted, once (the minutes it
has written are dropped from memory only after the write), and a reader never counts a
minute both from memory and from the store.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable

import msgspec

from tierq.engine.events import Batch
from tierq.engine.service import Service
from tierq.model import Event, Task
from tierq.storage.rollups import Rollup, RollupStore
from tierq.timefmt import iso

# Upper bounds of the histogram buckets, in seconds (the last bucket is open-ended).
BOUNDS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
)  # fmt: skip
KEEP_S = 8 * 86400.0  # rows older than this are deleted (the longest window read is a week)
FORGET_EVERY_S = 3600.0
_COUNTED = ("submitted", "started", "succeeded", "failed", "cancelled")


class Counts(msgspec.Struct):
    """One minute of one tenant (the JSON body of a stored row)."""

    submitted: int = 0
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    wait: list[int] = msgspec.field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    run: list[int] = msgspec.field(default_factory=lambda: [0] * (len(BOUNDS) + 1))

    def add(self, other: Counts) -> None:
        for name in _COUNTED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.wait, other.wait), (self.run, other.run)):
            for i, n in enumerate(theirs[: len(mine)]):
                mine[i] += n


class Window(msgspec.Struct, frozen=True):
    """Outcomes of the tasks of one time range."""

    start: str
    end: str
    submitted: int
    started: int
    succeeded: int
    failed: int
    cancelled: int
    throughput_per_s: float  # tasks that ended (succeeded, failed, cancelled) per second
    failure_rate: float  # failed / (succeeded + failed); 0 when none ended
    wait_p50_seconds: float | None
    wait_p95_seconds: float | None
    wait_p99_seconds: float | None
    run_p50_seconds: float | None
    run_p95_seconds: float | None
    run_p99_seconds: float | None


class MetricsReport(msgspec.Struct, frozen=True):
    from_time: str
    to_time: str
    bucket_seconds: int
    summary: Window
    buckets: list[Window]


def _iso(ts: float) -> str:
    return iso(ts) or ""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Counts).decode


def percentile(histogram: list[int], p: float) -> float | None:
    total = sum(histogram)
    if not total:
        return None
    rank = math.ceil(total * p)
    seen = 0
    for i, n in enumerate(histogram):
        seen += n
        if seen >= rank:
            # The open-ended last bucket reads as its lower bound: "at least an hour".
            return BOUNDS[min(i, len(BOUNDS) - 1)]
    return None


def _histogram(histogram: list[int], values: list[float]) -> None:
    """Add values to a histogram over BOUNDS: one sort, one bisection per bound."""
    values.sort()
    below = 0
    for i, bound in enumerate(BOUNDS):
        upto = bisect.bisect_right(values, bound)
        histogram[i] += upto - below
        below = upto
    histogram[-1] += len(values) - below


class MetricsRollups(Service):
    name = "rollups"

    def __init__(
        self,
        store: RollupStore,
        node_id: str,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self._store = store
        self._node = node_id
        self._clock = clock
        self._minutes: dict[tuple[int, str], Counts] = {}
        self._written_through = -1  # this replica's minutes up to it are in the store
        self._forgotten_at = 0.0

    # ---- counting (on the event bus: no awaits, no I/O) -----------------------------------

    def on_events(self, batch: Batch) -> None:
        """Count a published batch. On the hot path: whole-batch list passes and one sort per
        histogram instead of per-event branches (a batch's events almost always share one
        minute and one tenant; other batches are split first)."""
        events = batch.events
        if not events:
            return
        times = [e.at for e in events]
        tenants = {e.tenant for e in events}
        low = int(min(times) // 60) * 60
        if len(tenants) == 1 and int(max(times) // 60) * 60 == low:
            self._count(low, events[0].tenant, events, batch.tasks)
            return
        groups: dict[tuple[int, str], tuple[list[Event], list[Task | None]]] = {}
        for event, task in zip(events, batch.tasks, strict=True):
            group = groups.setdefault((int(event.at // 60) * 60, event.tenant), ([], []))
            group[0].append(event)
            group[1].append(task)
        for (minute, tenant), (some, their_tasks) in groups.items():
            self._count(minute, tenant, some, their_tasks)

    def _count(
        self, minute: int, tenant: str, events: list[Event], tasks: list[Task | None]
    ) -> None:
        kinds = Counter([e.event for e in events])
        if not any(kinds[k] for k in _COUNTED):
            return
        counts = self._minutes.get((minute, tenant))
        if counts is None:
            counts = self._minutes[(minute, tenant)] = Counts()
        counts.submitted += kinds["submitted"]
        counts.started += kinds["started"]
        counts.succeeded += kinds["succeeded"]
        counts.failed += kinds["failed"]
        counts.cancelled += kinds["cancelled"]
        if kinds["started"]:
            waits = [
                e.at - t.run_at
                for e, t in zip(events, tasks, strict=True)
                if t is not None and e.event == "started"
            ]
            _histogram(counts.wait, waits)
        if kinds["succeeded"]:
            runs = [
                e.duration_s for e in events if e.event == "succeeded" and e.duration_s is not None
            ]
            _histogram(counts.run, runs)

    # ---- writing --------------------------------------------------------------------------

    async def run_once(self) -> None:
        await self._write(everything=False)
        now = self._clock()
        if now - self._forgotten_at >= FORGET_EVERY_S:
            await self._store.forget(now - KEEP_S)
            self._forgotten_at = now

    async def drain(self) -> None:
        await self._write(everything=True)

    def next_wait(self) -> float:
        # Just after the next minute starts: the minute before it is complete.
        return 61.0 - self._clock() % 60

    async def _write(self, everything: bool) -> None:
        current = int(self._clock() // 60) * 60
        done = [k for k in self._minutes if everything or k[0] < current]
        if not done:
            return
        rows = [Rollup(m, self._node, t, _encode(self._minutes[(m, t)])) for m, t in done]
        await self._store.add(rows)
        for key in done:
            del self._minutes[key]
        self._written_through = max(self._written_through, max(m for m, _ in done))

    # ---- reading --------------------------------------------------------------------------

    async def report(
        self, since: float, until: float, bucket_s: int, tenant: str | None
    ) -> MetricsReport:
        """Outcomes from ``since`` to ``until`` in buckets of ``bucket_s`` (a multiple of
        60), every replica's, with a summary of the whole range."""
        # Memory first, then the store: a minute written in between is taken from memory.
        local = [(k, v) for k, v in self._minutes.items() if tenant is None or k[1] == tenant]
        through = self._written_through
        start = int(since // 60) * 60
        rows = await self._store.read(start, until, tenant)
        buckets: dict[int, Counts] = {}
        total = Counts()

        def take(minute: int, counts: Counts) -> None:
            if not start <= minute < until:
                return
            slot = start + (minute - start) // bucket_s * bucket_s
            buckets.setdefault(slot, Counts()).add(counts)
            total.add(counts)

        for row in rows:
            if row.node == self._node and row.minute > through:
                continue  # written after the memory was read: counted from memory
            take(row.minute, _decode(row.body))
        for (minute, _tenant), counts in local:
            take(minute, counts)
        slots = range(start, int(until), bucket_s)
        windows = [self._window(s, s + bucket_s, buckets.get(s, Counts())) for s in slots]
        return MetricsReport(
            from_time=_iso(start),
            to_time=_iso(until),
            bucket_seconds=bucket_s,
            summary=self._window(start, until, total),
            buckets=windows,
        )

    def _window(self, start: float, end: float, c: Counts) -> Window:
        ended = c.succeeded + c.failed + c.cancelled
        judged = c.succeeded + c.failed
        span = max(1.0, min(end, self._clock()) - start)
        return Window(
            start=_iso(start),
            end=_iso(end),
            submitted=c.submitted,
            started=c.started,
            succeeded=c.succeeded,
            failed=c.failed,
            cancelled=c.cancelled,
            throughput_per_s=round(ended / span, 3),
            failure_rate=round(c.failed / judged, 4) if judged else 0.0,
            wait_p50_seconds=percentile(c.wait, 0.5),
            wait_p95_seconds=percentile(c.wait, 0.95),
            wait_p99_seconds=percentile(c.wait, 0.99),
            run_p50_seconds=percentile(c.run, 0.5),
            run_p95_seconds=percentile(c.run, 0.95),
            run_p99_seconds=percentile(c.run, 0.99),
        )

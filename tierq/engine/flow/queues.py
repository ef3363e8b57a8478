"""What ``GET /api/v1/queues`` shows of each queue: its depth by state (the record tier), its
controls, and how many of its tasks finished in the last minute across replicas (each replica
counts its own, ``Throughput``, and tells the others with its heartbeat)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from tierq.engine.events import Batch
from tierq.engine.flow.controls import QueueControls
from tierq.model import TERMINAL_EVENTS
from tierq.storage.base import Dispatch
from tierq.storage.queues import QueueControl, QueueStore

WINDOW_S = 60


class Throughput:
    """Tasks of each queue that reached a terminal state here, per second, for a minute
    (a subscriber of the event bus)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seconds: collections.deque[tuple[int, collections.Counter[str]]] = collections.deque()

    def on_events(self, batch: Batch) -> None:
        finished = [e.queue for e in batch.events if e.event in TERMINAL_EVENTS and e.task_id]
        if not finished:
            return
        now = int(self._clock())
        seconds = self._seconds
        if not seconds or seconds[-1][0] != now:
            seconds.append((now, collections.Counter()))
            while seconds[0][0] <= now - WINDOW_S:
                seconds.popleft()
        seconds[-1][1].update(finished)

    def last_minute(self) -> dict[str, int]:
        oldest = int(self._clock()) - WINDOW_S
        total: collections.Counter[str] = collections.Counter()
        for second, counts in self._seconds:
            if second > oldest:
                total.update(counts)
        return dict(total)


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    counts: dict[str, int]
    running: int
    paused: bool
    control: QueueControl | None
    oldest_pending_age_s: float | None
    finished_last_minute: int


async def queue_views(
    store: QueueStore,
    controls: QueueControls,
    dispatch: Dispatch,
    throughput: Throughput,
    now: float,
    tenant: str | None,
) -> list[QueueView]:
    """Every queue with tasks or controls; a tenant sees its own tasks' counts only (and the
    controls, which are the operator's)."""
    depths = {d.queue: d for d in await store.depths(tenant)}
    finished: collections.Counter[str] = collections.Counter()
    if dispatch.capabilities.shared:
        for replica in await dispatch.replicas(now):
            counts = replica.info.get("finished_last_minute")
            if isinstance(counts, dict):
                finished.update({str(q): int(n) for q, n in counts.items()})
    else:
        finished.update(throughput.last_minute())
    known = controls.all()
    names = sorted(depths.keys() | known.keys() | (finished.keys() if tenant is None else set()))
    views: list[QueueView] = []
    for name in names:
        depth = depths.get(name)
        counts = dict(depth.counts) if depth is not None else {}
        oldest = depth.oldest_queued_at if depth is not None else None
        control = known.get(name)
        views.append(
            QueueView(
                name,
                counts,
                counts.get("running", 0),
                control is not None and control.paused,
                control,
                None if oldest is None else max(0.0, now - oldest),
                finished.get(name, 0),
            )
        )
    return views

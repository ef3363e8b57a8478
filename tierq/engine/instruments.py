"""The engine's metrics, recorded in one place.

Every engine service reports what happened here (a batch submitted, a task started, an attempt
failed); what tasks did (submitted, succeeded, cancelled, how long they ran) it learns as a
subscriber of the event bus (``on_events``), a batch at a time. Nothing else in ``engine/``
touches a Prometheus object. Label children are looked up once per label set and kept
(``_child``): ``labels()`` per task cost more than the observation itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from tierq.engine.events import Batch
from tierq.metrics import Metrics
from tierq.model import EventType

# Events counted per task type, and the counter each goes to.
_COUNTED = {
    EventType.SUBMITTED.value: "tasks_submitted",
    EventType.SUCCEEDED.value: "tasks_completed",
    EventType.CANCELLED.value: "tasks_cancelled",
}

_BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}


class EngineMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        # The one observation made per task start: its bound method by type, straight from
        # a dict (the children still come from the cache above).
        self._wait_observers: dict[str, Callable[[float], None]] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ---- what the services report -------------------------------------------------------------

    def waited(self, type_name: str, seconds: float) -> None:
        """Time from due (run_at) to start, per task type; once per task."""
        observe = self._wait_observers.get(type_name)
        if observe is None:
            observe = self._child(self.metrics.wait_seconds, type_name).observe
            self._wait_observers[type_name] = observe
        observe(seconds)

    def breaker_state(self, key: str, state: str) -> None:
        self._child(self.metrics.breaker_state, key).set(_BREAKER_LEVEL.get(state, 0))

    def queue_paused(self, queue: str, paused: bool) -> None:
        self._child(self.metrics.queue_paused, queue).set(1 if paused else 0)

    def flow_wait(self, reason: str, tasks: int = 1) -> None:
        self._child(self.metrics.flow_waits, reason).inc(tasks)

    def attempt_failed(self, type_name: str, final: bool) -> None:
        self._child(self.metrics.tasks_failed, type_name, "true" if final else "false").inc()

    def on_events(self, batch: Batch) -> None:
        """Counts and run times of a published batch of events, per task type."""
        events = batch.events
        metrics = self.metrics
        child = self._child
        for (kind, type_name), n in Counter([(e.event, e.type) for e in events]).items():
            child(metrics.events, kind).inc(n)
            counter = _COUNTED.get(kind)
            if counter is not None:
                child(getattr(metrics, counter), type_name).inc(n)
        observers: dict[str, Callable[[float], None]] = {}
        for event in events:
            if event.event == "succeeded" and event.duration_s is not None:
                type_name = event.type
                observe = observers.get(type_name)
                if observe is None:
                    observe = observers[type_name] = child(
                        metrics.execution_seconds, type_name
                    ).observe
                observe(event.duration_s)

    def notification(self, channel: str, outcome: str, seconds: float | None) -> None:
        self._child(self.metrics.notifications, channel, outcome).inc()
        if seconds is not None:
            self._child(self.metrics.notification_seconds, channel).observe(seconds)

    def schedule_ticks(self, outcome: str, n: int) -> None:
        if n:
            self._child(self.metrics.schedule_ticks, outcome).inc(n)

    def schedule_fire_lag(self, lags: Iterable[float]) -> None:
        observe = self.metrics.schedule_fire_lag_seconds.observe
        for lag in lags:
            observe(lag)

    def schedules_held(self, active: int, paused: int, done: int, leader: bool) -> None:
        gauge = self.metrics.schedules
        self._child(gauge, "active").set(active)
        self._child(gauge, "paused").set(paused)
        self._child(gauge, "done").set(done)
        self.metrics.schedule_leader.set(1 if leader else 0)

    def event_log_failed(self) -> None:
        self.metrics.event_log_failures.inc()

    def event_sink_failed(self) -> None:
        self.metrics.event_sink_failures.inc()

    def event_listeners(self, n: int) -> None:
        self.metrics.event_listeners.set(n)

    def stale_reports(self, n: int) -> None:
        self.metrics.stale_reports.inc(n)

    def record_rejected(self) -> None:
        self.metrics.record_rejected.inc()

    def workers(self, total: int) -> None:
        self.metrics.workers_total.set(total)

    def memory_depth(self, ready: int, delayed: int, running: int, unflushed: int) -> None:
        gauge = self.metrics.queue_depth
        self._child(gauge, "memory", "ready").set(ready)
        self._child(gauge, "memory", "delayed").set(delayed)
        self._child(gauge, "memory", "running").set(running)
        self._child(gauge, "memory", "unflushed").set(unflushed)
        self.metrics.workers_busy.set(running)

    def tier_depth(self, tier: str, depths: Iterable[tuple[str, int]]) -> None:
        gauge = self.metrics.queue_depth
        for kind, n in depths:
            self._child(gauge, tier, kind).set(n)

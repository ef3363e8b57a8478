"""The engine's metrics, recorded in one place.

Every engine service reports what happened here (a batch submitted, a task started, an attempt
failed, a flushed batch); nothing else in ``engine/`` touches a Prometheus object. Label
children are looked up once per label set and kept (``_child``): ``labels()`` per task cost
more than the observation itself. When the event bus lands, this becomes one of its
subscribers, fed the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tierq.metrics import Metrics
from tierq.model import Task, TaskState, Transition


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

    def submitted(self, tasks: Sequence[Task]) -> None:
        by_type: dict[str, int] = {}
        for task in tasks:
            by_type[task.type] = by_type.get(task.type, 0) + 1
        counter = self.metrics.tasks_submitted
        for type_name, n in by_type.items():
            self._child(counter, type_name).inc(n)

    def waited(self, type_name: str, seconds: float) -> None:
        """Time from due (run_at) to start, per task type; once per task."""
        observe = self._wait_observers.get(type_name)
        if observe is None:
            observe = self._child(self.metrics.wait_seconds, type_name).observe
            self._wait_observers[type_name] = observe
        observe(seconds)

    def attempt_failed(self, type_name: str, final: bool) -> None:
        self._child(self.metrics.tasks_failed, type_name, "true" if final else "false").inc()

    def finished(self, batch: Iterable[tuple[Transition, Task]]) -> None:
        """A flushed batch's terminal transitions, each with the held copy it ended."""
        completed: dict[str, int] = {}
        cancelled: dict[str, int] = {}
        observers: dict[str, Callable[[float], None]] = {}
        succeeded = TaskState.SUCCEEDED
        for t, task in batch:
            type_name = task.type
            if t.state is succeeded:
                completed[type_name] = completed.get(type_name, 0) + 1
                if t.started_at is not None and t.finished_at is not None:
                    observe = observers.get(type_name)
                    if observe is None:
                        observe = self._child(self.metrics.execution_seconds, type_name).observe
                        observers[type_name] = observe
                    observe(t.finished_at - t.started_at)
            elif t.state is TaskState.CANCELLED:
                cancelled[type_name] = cancelled.get(type_name, 0) + 1
        for type_name, n in completed.items():
            self._child(self.metrics.tasks_completed, type_name).inc(n)
        for type_name, n in cancelled.items():
            self._child(self.metrics.tasks_cancelled, type_name).inc(n)

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

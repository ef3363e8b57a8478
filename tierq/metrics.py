"""Prometheus metrics. Defined once here; recorded at the seams (storage wrapper, engine
flusher, API middleware), never inside backends. Names are used by grafana/ dashboards."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


class _Series:
    """One label set of a TaskHistogram: per-bucket counts (not cumulative) and the sum."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # le semantics: a value equal to a bound belongs to that bound's bucket.
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value


class TaskHistogram(Collector):
    """A histogram for observations made once per task on the event loop (wait and run
    time), exposed exactly like prometheus_client's Histogram (``_bucket``, ``_count``,
    ``_sum``). prometheus_client takes a lock per bucket and per sum on every observation,
    which showed in profiles of a drain at two observations per task. Observations come from
    the loop only, so plain ints suffice."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._bounds = [float(b) for b in buckets]
        self._series: dict[tuple[str, ...], _Series] = {}
        registry.register(self)

    def labels(self, *values: str) -> _Series:
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}")
            series = self._series[values] = _Series(self._bounds)
        return series

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        bounds = [*(repr(b) for b in self._bounds), "+Inf"]
        for values, series in list(self._series.items()):
            cumulative, running = [], 0
            for bound, n in zip(bounds, series.counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            family.add_metric(list(values), cumulative, series.total)
        yield family


class Metrics:
    """One set per process (tests make their own registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tasks_submitted = Counter(
            "tierq_tasks_submitted_total", "Tasks accepted (durable)", ["type"], registry=r
        )
        self.tasks_completed = Counter(
            "tierq_tasks_completed_total", "Tasks that succeeded", ["type"], registry=r
        )
        self.tasks_failed = Counter(
            "tierq_tasks_failed_total",
            "Failed attempts; final=true when the task was dead-lettered",
            ["type", "final"],
            registry=r,
        )
        self.tasks_cancelled = Counter(
            "tierq_tasks_cancelled_total", "Tasks cancelled", ["type"], registry=r
        )
        self.stale_reports = Counter(
            "tierq_stale_reports_total",
            "Completions refused by the fencing token (a newer attempt owns the task)",
            registry=r,
        )
        self.record_rejected = Counter(
            "tierq_record_rejected_total",
            "State changes dropped because the record store refused them for good "
            "(not an outage: a value it will never accept)",
            registry=r,
        )
        self.queue_depth = Gauge(
            "tierq_queue_depth", "Tasks per tier and kind", ["tier", "kind"], registry=r
        )
        self.execution_seconds = TaskHistogram(
            "tierq_task_execution_seconds",
            "Handler run time per attempt",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.wait_seconds = TaskHistogram(
            "tierq_task_wait_seconds",
            "Time from due (run_at) to start",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_seconds = Histogram(
            "tierq_store_operation_seconds",
            "Record/dispatch tier call latency",
            ["tier", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "tierq_store_errors_total", "Failed store calls", ["tier", "operation"], registry=r
        )
        self.batch_size = Histogram(
            "tierq_store_batch_size",
            "Items per batched store write",
            ["tier", "operation"],
            buckets=(1, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
            registry=r,
        )
        self.http_requests = Counter(
            "tierq_http_requests_total", "HTTP requests", ["route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "tierq_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag_seconds = Histogram(
            "tierq_event_loop_lag_seconds",
            "How late the event loop ran a 50 ms timer: time small requests wait behind "
            "other work on the loop",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.events = Counter(
            "tierq_events_total", "Task events published by this replica", ["event"], registry=r
        )
        self.event_log_failures = Counter(
            "tierq_event_log_failures_total",
            "Batches of events the event log could not take (the tasks' changes stand)",
            registry=r,
        )
        self.event_sink_failures = Counter(
            "tierq_event_sink_failures_total",
            "Batches of events the external broker did not confirm (sent again)",
            registry=r,
        )
        self.event_listeners = Gauge(
            "tierq_event_listeners",
            "Live event streams and task waits open on this replica",
            registry=r,
        )
        self.notifications = Counter(
            "tierq_notifications_total",
            "Notification delivery attempts by channel and outcome (delivered, failed: to be "
            "retried, gave_up, gone: the receiver answered 410, refused: the target may not "
            "be reached)",
            ["channel", "outcome"],
            registry=r,
        )
        self.notification_seconds = Histogram(
            "tierq_notification_seconds",
            "Time one delivery attempt took (request and answer)",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.schedules = Gauge(
            "tierq_schedules",
            "Schedules held by this replica's scheduler (the leader), by state (active, "
            "paused, done: no tick left)",
            ["state"],
            registry=r,
        )
        self.schedule_ticks = Counter(
            "tierq_schedule_ticks_total",
            "Schedule ticks by outcome: fired, late (fired after the grace), skipped_<reason> "
            "(overlap, paused, window, missed), dropped (beyond the catch-up window)",
            ["outcome"],
            registry=r,
        )
        self.schedule_fire_lag_seconds = Histogram(
            "tierq_schedule_fire_lag_seconds",
            "Time from a tick to its task being committed",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.schedule_leader = Gauge(
            "tierq_schedule_leader", "1 while this replica fires the schedules", registry=r
        )
        self.access_refusals = Counter(
            "tierq_access_refusals_total",
            "Requests refused by access control: unauthenticated (401), forbidden (403), "
            "rate_limited, guard (brute-force guard), inflight (a tenant's cap), shed (503 "
            "while the record tier falls behind)",
            ["reason"],
            registry=r,
        )
        self.audit_rows = Counter(
            "tierq_audit_rows_total", "Rows appended to the audit log", registry=r
        )
        self.breaker_state = Gauge(
            "tierq_breaker_state",
            "Circuit breaker state as this replica sees it: 0 closed, 1 half-open, 2 open",
            ["key"],
            registry=r,
        )
        self.queue_paused = Gauge(
            "tierq_queue_paused", "1 while the queue is paused", ["queue"], registry=r
        )
        self.flow_waits = Counter(
            "tierq_flow_waits_total",
            "Tasks held back: by a breaker (deferred at start), a paused queue, or a queue's "
            "limits (parked at start embedded; distributed, ready tasks a claim left, counted "
            "at each claim)",
            ["reason"],
            registry=r,
        )
        self.workers_busy = Gauge("tierq_workers_busy", "Workers running a task", registry=r)
        self.workers_total = Gauge("tierq_workers", "Configured workers", registry=r)

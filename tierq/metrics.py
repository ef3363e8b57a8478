"""Prometheus metrics. Defined once here; recorded at the seams (storage wrapper, engine
flusher, API middleware), never inside backends. Names are used by grafana/ dashboards."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.execution_seconds = Histogram(
            "tierq_task_execution_seconds",
            "Handler run time per attempt",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.wait_seconds = Histogram(
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
        self.workers_busy = Gauge("tierq_workers_busy", "Workers running a task", registry=r)
        self.workers_total = Gauge("tierq_workers", "Configured workers", registry=r)

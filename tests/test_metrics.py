"""Metrics: the hand-rolled per-task histogram exposes exactly what prometheus_client's
does, the loop-lag monitor sees a blocked loop, and the dashboards query only metrics the
server exports."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from tierq.engine.looplag import LoopLagMonitor
from tierq.metrics import LATENCY_BUCKETS, Metrics, TaskHistogram


def exposition(registry: CollectorRegistry) -> list[str]:
    # _created is prometheus_client's own timestamp series; dashboards do not use it.
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_task_histogram_matches_prometheus_client() -> None:
    reference, ours = CollectorRegistry(), CollectorRegistry()
    expected = Histogram("x_seconds", "doc", ["type"], buckets=LATENCY_BUCKETS, registry=reference)
    actual = TaskHistogram("x_seconds", "doc", ["type"], buckets=LATENCY_BUCKETS, registry=ours)
    # Values on a bound, between bounds, below the first and above the last.
    values = [0.0, 0.0001, 0.0005, 0.003, 0.0499, 0.05, 1, 2.5, 299.9, 300, 400]
    for type_name in ("noop", "http"):
        for v in values:
            expected.labels(type_name).observe(v)
            actual.labels(type_name).observe(v)
    assert exposition(ours) == exposition(reference)
    assert ours.get_sample_value("x_seconds_count", {"type": "http"}) == len(values)


def test_task_histogram_rejects_wrong_label_count() -> None:
    histogram = TaskHistogram(
        "y_seconds", "doc", ["type"], buckets=(1.0,), registry=CollectorRegistry()
    )
    with pytest.raises(ValueError, match="y_seconds"):
        histogram.labels("a", "b")


async def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    observed: list[float] = []
    monitor = LoopLagMonitor(observed.append, interval_s=0.01)
    await monitor.run_once()
    quiet = monitor.last_lag

    # What a long synchronous step does to everything else on the loop.
    asyncio.get_running_loop().call_soon(time.sleep, 0.1)
    await monitor.run_once()
    assert monitor.last_lag >= 0.09 > quiet
    assert observed == [quiet, monitor.last_lag]


def test_every_dashboard_query_names_a_metric_the_server_exports() -> None:
    dashboards = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
    # Series names by family type: labelled families have no samples until first used.
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    exported = {
        f"{family.name}{suffix}"
        for family in Metrics().registry.collect()
        for suffix in suffixes[family.type]
    }
    queried: set[str] = set()
    for path in dashboards.glob("*.json"):
        queried |= set(re.findall(r"\btierq_[a-z_]+", path.read_text()))
    assert queried, "no dashboard queries found"
    assert queried <= exported, sorted(queried - exported)

"""Per-minute rollups: counts and histograms of a batch that spans minutes and tenants, and a
report that reads memory and the record tier without counting a minute twice (a real
SQLite rollup store)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import record_task
from tierq.engine.events import Batch
from tierq.engine.rollups import BOUNDS, MetricsRollups, percentile
from tierq.model import Event
from tierq.storage.factory import make_rollup_store
from tierq.storage.sqlite.store import SQLiteRecordStore

MINUTE = 1_800_000_000.0  # the start of a minute (divisible by 60)


def event(kind: str, at: float, tenant: str = "default", duration: float | None = None) -> Event:
    return Event(at=at, event=kind, task_id="t", tenant=tenant, duration_s=duration)


async def test_a_batch_across_minutes_and_tenants_is_split(tmp_path: Path) -> None:
    record = SQLiteRecordStore(str(tmp_path / "r.db"))
    await record.open()
    try:
        clock = [MINUTE + 130.0]
        rollups = MetricsRollups(make_rollup_store(record), "n1", lambda: clock[0])
        task = record_task(run_at=MINUTE + 5.0)
        events = [
            event("submitted", MINUTE + 5.0),
            event("started", MINUTE + 5.03),  # waited 30 ms
            event("succeeded", MINUTE + 5.2, duration=0.17),
            event("failed", MINUTE + 61.0, tenant="acme"),
            event("retried", MINUTE + 62.0),  # not counted
            event("cancelled", MINUTE + 70.0),
        ]
        rollups.on_events(Batch(events, [task, task, task, None, None, None]))
        report = await rollups.report(MINUTE, MINUTE + 120, 60, None)
        first, second = report.buckets
        assert (first.submitted, first.started, first.succeeded) == (1, 1, 1)
        assert (first.wait_p50_seconds, first.run_p99_seconds) == (0.05, 0.2)
        assert (second.failed, second.cancelled, second.failure_rate) == (1, 1, 1.0)
        acme = await rollups.report(MINUTE, MINUTE + 120, 120, "acme")
        assert (acme.summary.failed, acme.summary.cancelled) == (1, 0)
        # Written once both minutes are over; the figures stay the same, never doubled.
        await rollups.run_once()
        assert len(await make_rollup_store(record).read(0, MINUTE * 2, None)) == 3
        again = await rollups.report(MINUTE, MINUTE + 120, 60, None)
        assert again.buckets == report.buckets
        # A replica started afterwards (its memory empty) reads the same from the store.
        fresh = MetricsRollups(make_rollup_store(record), "n2", lambda: clock[0])
        assert (await fresh.report(MINUTE, MINUTE + 120, 60, None)).buckets == report.buckets
    finally:
        await record.close()


def test_percentiles_read_the_upper_bound_of_the_bucket() -> None:
    histogram = [0] * (len(BOUNDS) + 1)
    histogram[2] = 98  # <= 5 ms
    histogram[9] = 2  # <= 1 s
    assert percentile(histogram, 0.5) == 0.005
    assert percentile(histogram, 0.99) == 1.0
    assert percentile([0] * (len(BOUNDS) + 1), 0.5) is None
    histogram[-1] = 1000  # past the last bound: read as the last bound, "at least"
    assert percentile(histogram, 0.99) == BOUNDS[-1]

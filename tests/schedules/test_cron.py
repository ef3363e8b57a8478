"""The fire-time rule (engine/schedules/cron.py) on real time-zone transitions, and its
properties over generated expressions (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierq.engine.schedules.cron import Cron, CronError, FixedRate, next_times


def local(times: list[float], tz: str) -> list[str]:
    zone = ZoneInfo(tz)
    return [datetime.fromtimestamp(t, zone).isoformat() for t in times]


def at(tz: str, *parts: int) -> float:
    return datetime(*parts, tzinfo=ZoneInfo(tz)).timestamp()  # type: ignore[misc]


# (zone, spring-forward day, autumn day, a wall time in the gap, a wall time in the repeat)
TRANSITIONS = [
    ("Europe/Berlin", (2026, 3, 29), (2026, 10, 25), "30 2", "30 2"),
    ("America/New_York", (2026, 3, 8), (2026, 11, 1), "30 2", "30 1"),
    ("Australia/Sydney", (2026, 10, 4), (2026, 4, 5), "30 2", "30 2"),
]


@pytest.mark.parametrize("seconds_first", [False, True])
@pytest.mark.parametrize(("tz", "spring", "autumn", "gap", "repeat"), TRANSITIONS)
def test_fixed_time_runs_once_per_day_across_both_transitions(
    tz: str,
    spring: tuple[int, int, int],
    autumn: tuple[int, int, int],
    gap: str,
    repeat: str,
    seconds_first: bool,
) -> None:
    prefix = "0 " if seconds_first else ""
    zone = ZoneInfo(tz)
    # Spring: the wall time does not exist that day; it runs once, at the first valid instant.
    cron = Cron(f"{prefix}{gap} * * *", tz)
    start = datetime(*spring, tzinfo=zone) - timedelta(days=1)
    times = next_times(cron, start.timestamp(), 3)
    days = [datetime.fromtimestamp(t, zone).date() for t in times]
    assert days == [start.date() + timedelta(days=n) for n in range(3)]  # one per day, none lost
    gap_day = datetime.fromtimestamp(times[1], zone)
    assert (gap_day.hour, gap_day.minute) == (3, 0)  # the first valid instant after 02:30
    # Autumn: the wall time happens twice that day; it runs once (the first pass).
    cron = Cron(f"{prefix}{repeat} * * *", tz)
    start = datetime(*autumn, tzinfo=zone) - timedelta(days=1)
    times = next_times(cron, start.timestamp(), 3)
    days = [datetime.fromtimestamp(t, zone).date() for t in times]
    assert days == [start.date() + timedelta(days=n) for n in range(3)]
    assert all(b - a >= 82_800 for a, b in itertools.pairwise(times))


@pytest.mark.parametrize(("tz", "spring", "autumn", "gap", "repeat"), TRANSITIONS)
def test_hour_steps_run_in_absolute_time(
    tz: str, spring: tuple[int, int, int], autumn: tuple[int, int, int], gap: str, repeat: str
) -> None:
    for day in (spring, autumn):
        start = datetime(*day, tzinfo=UTC) - timedelta(days=1)
        times = next_times(Cron("0 * * * *", tz), start.timestamp(), 72)
        assert {b - a for a, b in itertools.pairwise(times)} == {3600.0}
        times = next_times(Cron("*/30 * * * *", tz), start.timestamp(), 144)
        assert {b - a for a, b in itertools.pairwise(times)} == {1800.0}


def test_six_fields_put_seconds_first() -> None:
    start = at("UTC", 2026, 1, 1, 0, 0, 0)
    assert next_times(Cron("*/5 * * * * *"), start, 3) == [start + 5, start + 10, start + 15]
    every_15 = next_times(Cron("0 */15 * * * *"), start, 3)
    assert every_15 == [start + 900, start + 1800, start + 2700]
    # Strictly after: a tick exactly at the start is not returned again.
    assert Cron("*/5 * * * * *").next_after(start + 5) == start + 10
    assert Cron("10,20 * * * * *").next_after(start + 10.5) == start + 20


def test_macros_and_time_zones() -> None:
    start = at("UTC", 2026, 1, 1, 12, 0, 0)
    assert local(next_times(Cron("@daily", "Europe/Berlin"), start, 1), "Europe/Berlin") == [
        "2026-01-02T00:00:00+01:00"
    ]
    assert local(next_times(Cron("@hourly"), start, 1), "UTC") == ["2026-01-01T13:00:00+00:00"]
    weekly = datetime.fromtimestamp(Cron("@weekly").next_after(start) or 0, UTC)
    assert weekly.weekday() == 6 and weekly.hour == 0  # Sunday midnight
    assert local(next_times(Cron("@yearly"), start, 1), "UTC") == ["2027-01-01T00:00:00+00:00"]
    assert Cron("@monthly").next_after(start) == at("UTC", 2026, 2, 1, 0, 0, 0)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("* * * *", None),
        ("* * * * * * *", None),
        ("61 * * * *", "minute"),
        ("*/0 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 32 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 9", "day-of-week"),
        ("61 * * * * *", "second"),
        ("*/0 * * * * *", "second"),
        ("@fortnightly", None),
    ],
)
def test_bad_expressions_name_the_field(text: str, field: str | None) -> None:
    with pytest.raises(CronError) as caught:
        Cron(text)
    assert caught.value.field == field
    if field is not None:
        assert field in str(caught.value)


def test_unknown_time_zone() -> None:
    for name in ("Mars/Olympus", "", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(CronError, match="time zone"):
            Cron("* * * * *", name)


def test_fixed_rate_has_no_drift_over_ten_thousand_ticks() -> None:
    anchor = 1_764_000_000.123
    for interval in (1, 7, 60, 86_400):
        rate = FixedRate(interval, anchor)
        tick = rate.next_after(anchor - 1)
        assert tick == anchor
        for n in range(1, 10_001):
            tick = rate.next_after(tick)
            assert tick == anchor + n * interval


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]


def _field(values: list[int]) -> str:
    return ",".join(str(v) for v in sorted(set(values)))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.lists(st.integers(0, 59), min_size=1, max_size=3),
    st.one_of(st.none(), st.lists(st.integers(0, 23), min_size=1, max_size=3)),
    st.one_of(st.none(), st.lists(st.integers(0, 59), min_size=1, max_size=3)),
    st.integers(1_700_000_000, 1_900_000_000),
)
def test_fire_times_increase_and_match_the_expression(
    tz: str, minutes: list[int], hours: list[int] | None, seconds: list[int] | None, start: int
) -> None:
    hour_field = "*" if hours is None else _field(hours)
    text = f"{_field(minutes)} {hour_field} * * *"
    if seconds is not None:
        text = f"{_field(seconds)} {text}"
    cron = Cron(text, tz)
    zone = ZoneInfo(tz)
    times = next_times(cron, float(start), 30)
    assert len(times) == 30
    assert times[0] > start
    assert all(b > a for a, b in itertools.pairwise(times))
    for t in times:
        when = datetime.fromtimestamp(t, zone)
        matches = when.minute in minutes and (hours is None or when.hour in hours)
        matches = matches and when.second in (seconds or [0])
        # The one exception is the rule itself: a wall time in a spring-forward gap fires at
        # the first valid instant after the gap.
        after_gap = (when - timedelta(seconds=1)).utcoffset() != when.utcoffset() or (
            datetime.fromtimestamp(t - 3600, zone).utcoffset() != when.utcoffset()
        )
        assert matches or after_gap, (text, tz, when.isoformat())

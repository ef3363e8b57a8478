"""When a schedule fires: cron expressions (through ``cronsim``) and fixed rates.

The rule we promise, whatever the library does:

- A cron expression is read in the schedule's IANA time zone. Five fields are
  ``minute hour day-of-month month day-of-week``; six put ``second`` first (as Spring and
  seed 004 do: ``*/5 * * * * *`` is every five seconds). Macros: ``@hourly @daily
  @midnight @weekly @monthly @yearly @annually``.
- At a fixed wall-clock time an expression fires exactly once per matching day, also on DST
  days: a time in the spring-forward gap fires once at the first valid instant after it, a
  time in the repeated autumn hour fires once (the first pass). Expressions with ``*`` or a
  step in the hour field run in absolute time (every hour is an hour of real time).
- ``cronsim`` follows that rule for five fields. For six it skips a gap day entirely, so six
  fields are evaluated here as the five-field expression of the minutes (which follows the
  rule) times the seconds of the first field: the same instants everywhere except a gap.
- A fixed rate fires at ``anchor + n * interval`` (n = 0, 1, ...): tick n never depends on
  when tick n-1 fired, so there is no drift.

Times in and out are POSIX seconds (UTC); ``next_after(t)`` is the first fire time strictly
after ``t``, or None when there is none.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_MAX_LENGTH = 200
# cronsim gives up on an expression that cannot match within its search span; bounded here
# too, so no expression can keep the scheduler searching.
_MAX_MINUTES_SEARCHED = 10_000


class CronError(ValueError):
    """An expression or time zone that cannot be used; ``field`` names the part at fault
    (``second``, ``minute``, ..., or None for the expression as a whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or CronError."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise CronError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)"
        ) from None


def _check_field(expr: str, fields: list[str], sample: str) -> None:
    """Run cronsim on ``expr``; on refusal name the field and the text that was refused."""
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        message = str(exc)
        for position, name in enumerate(_FIELDS):
            if message.lower() == f"bad {name}":
                raise CronError(f"bad {name} field {fields[position]!r}", name) from None
        raise CronError(f"bad expression {sample!r}: {message}") from None


def _seconds_of(field: str) -> tuple[int, ...]:
    """The seconds of a minute a six-field expression's first field matches."""
    try:
        sim = CronSim(f"{field} * * * * *", datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))
    except CronSimError:
        raise CronError(f"bad second field {field!r}", "second") from None
    seconds: list[int] = []
    for when in sim:
        if when.minute != 0:
            break
        seconds.append(when.second)
    if not seconds:
        raise CronError(f"bad second field {field!r}", "second")
    return tuple(seconds)


class Cron:
    """A parsed cron expression in one time zone."""

    def __init__(self, text: str, timezone: str = "UTC") -> None:
        if len(text) > _MAX_LENGTH:
            raise CronError(f"at most {_MAX_LENGTH} characters")
        cleaned = " ".join(text.split())
        expr = MACROS.get(cleaned.lower(), cleaned)
        if expr.startswith("@"):
            known = " ".join(MACROS)
            raise CronError(f"unknown macro {cleaned!r} (known: {known})")
        fields = expr.split(" ") if expr else []
        if len(fields) not in (5, 6):
            raise CronError(
                f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
                f"(second first), got {len(fields)}"
            )
        self.text = cleaned
        self.has_seconds = len(fields) == 6
        self.seconds: tuple[int, ...] = _seconds_of(fields[0]) if self.has_seconds else (0,)
        minute_fields = fields[1:] if self.has_seconds else fields
        self._minutes = " ".join(minute_fields)
        _check_field(self._minutes, minute_fields, cleaned)
        self.zone = zone(timezone)

    def next_after(self, t: float) -> float | None:
        # From just before the minute holding t: that minute itself may still have a second
        # left after t. cronsim yields the matching minutes strictly after its start.
        start = math.floor(t / 60.0) * 60.0 - 1.0
        sim = CronSim(self._minutes, datetime.fromtimestamp(start, self.zone))
        for searched, minute in enumerate(sim):
            base = minute.timestamp()
            for second in self.seconds:
                if base + second > t:
                    return base + second
            if searched >= _MAX_MINUTES_SEARCHED:
                return None
        return None


class FixedRate:
    """Every ``interval`` seconds from ``anchor``."""

    __slots__ = ("anchor", "interval")

    def __init__(self, interval: int, anchor: float) -> None:
        if interval < 1:
            raise CronError("must be at least 1")
        self.interval = interval
        self.anchor = anchor

    def next_after(self, t: float) -> float:
        if t < self.anchor:
            return self.anchor
        n = math.floor((t - self.anchor) / self.interval) + 1
        tick = self.anchor + n * self.interval
        if tick <= t:  # float rounding at a boundary
            tick = self.anchor + (n + 1) * self.interval
        return tick


Timing = Cron | FixedRate


def next_times(timing: Timing, after: float, count: int, end: float | None = None) -> list[float]:
    """Up to ``count`` fire times strictly after ``after`` (and not after ``end``)."""
    out: list[float] = []
    t = after
    while len(out) < count:
        nxt = timing.next_after(t)
        if nxt is None or (end is not None and nxt > end):
            break
        out.append(nxt)
        t = nxt
    return out

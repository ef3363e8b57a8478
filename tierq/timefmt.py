"""Times as the API and notifications show them: ISO 8601 in UTC, millisecond precision."""

from __future__ import annotations

from datetime import UTC, datetime

_MIN_TS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def iso(ts: float | None) -> str | None:
    """ISO 8601 in UTC. Never raises: a stored time outside what datetime can show (written
    before run_at was bounded, or by hand) is clamped, NaN is shown as null, so one odd row
    cannot make every read of its task fail."""
    if ts is None or ts != ts:
        return None
    ts = min(max(ts, _MIN_TS), _MAX_TS)
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

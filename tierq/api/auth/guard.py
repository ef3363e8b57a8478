"""The brute-force guard: an address that failed to authenticate ``limit`` times within a
window gets 429 until the window ends (per process; nginx's limit_req covers a fleet)."""

from __future__ import annotations

# Addresses remembered before the oldest windows are forgotten.
PRUNE_AT = 10_000


class BruteForceGuard:
    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window = window_s
        self._failures: dict[str, tuple[float, int]] = {}  # address -> (window start, count)

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        if not self._limit:
            return 0.0
        start, count = self._failures.get(address, (now, 0))
        if count >= self._limit and now - start < self._window:
            return self._window - (now - start)
        return 0.0

    def failed(self, address: str, now: float) -> None:
        if not self._limit:
            return
        start, count = self._failures.get(address, (now, 0))
        if now - start >= self._window:
            start, count = now, 0
        self._failures[address] = (start, count + 1)
        if len(self._failures) > PRUNE_AT:
            self._failures = {a: v for a, v in self._failures.items() if now - v[0] < self._window}

"""Circuit breakers in Redis: every replica reports to and reads the same breakers.

The machine is storage/breakers.py's, run by ``lua/breaker_*.lua`` (helpers in
``_breaker.lua``); a batch of reports is one script call whatever the number of keys. Uses the
dispatch tier's connection. All keys share the ``{prefix}`` hash tag (one cluster slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tierq.storage.breakers import BreakerPolicy, BreakerState, BreakerStore, Report
from tierq.storage.redis.dispatch import RedisDispatch

_ROW = 10  # values per breaker row (see breaker_row in _breaker.lua)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _rows(flat: Sequence[Any]) -> list[BreakerState]:
    out: list[BreakerState] = []
    for i in range(0, len(flat), _ROW):
        name, state, calls, failures, trips, opened, nxt, forced, granted, pok = (
            _text(v) for v in flat[i : i + _ROW]
        )
        out.append(
            BreakerState(
                name,
                state,
                int(calls),
                int(failures),
                int(trips),
                float(opened) if opened else None,
                float(nxt) if nxt else None,
                forced == "1",
                int(granted),
                int(pok),
            )
        )
    return out


class RedisBreakerStore(BreakerStore):
    def __init__(self, dispatch: RedisDispatch, policy: BreakerPolicy) -> None:
        super().__init__(policy)
        self._dispatch = dispatch
        glob = "{" + dispatch.keys.prefix + "}"
        self._names = f"{glob}:breakers"
        self._prefix = f"{glob}:breaker:"

    def _policy_args(self) -> list[Any]:
        p = self.policy
        return [
            p.failure_ratio,
            p.min_calls,
            p.window,
            p.window_size,
            p.window_s,
            p.cooldown_s,
            p.cooldown_max_s,
            p.probes,
        ]

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        d = self._dispatch
        (result,) = await d._run([d._eval(script, keys, args)])
        return result

    async def _report(self, reports: Sequence[Report], now: float) -> list[BreakerState]:
        keys = [self._names] + [self._prefix + r.key for r in reports]
        args: list[Any] = [repr(now), *self._policy_args()]
        for r in reports:
            args += (r.key, r.calls, r.failures, r.probe_successes, r.probe_failures)
        return _rows(await self._call("breaker_report", keys, args))

    async def _acquire_probe(self, key: str, now: float) -> tuple[bool, BreakerState]:
        flat = await self._call(
            "breaker_probe",
            [self._names, self._prefix + key],
            [repr(now), *self._policy_args(), key],
        )
        return _text(flat[0]) == "1", _rows(flat[1:])[0]

    async def _states(self, now: float) -> list[BreakerState]:
        return _rows(
            await self._call(
                "breaker_list", [self._names], [repr(now), *self._policy_args(), self._prefix]
            )
        )

    async def _set_state(self, key: str, state: str, now: float) -> BreakerState:
        flat = await self._call(
            "breaker_set",
            [self._names, self._prefix + key],
            [repr(now), *self._policy_args(), key, state],
        )
        return _rows(flat)[0]

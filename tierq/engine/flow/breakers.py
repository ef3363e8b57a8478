"""Circuit breakers as the workers see them: which breaker a task answers to, whether it may
start, and the outcomes reported back in batches.

A task's breaker is the key it names (``breaker``), else its target host for the ``http`` and
``webhook`` types (``http:api.example.com``), else its type. This process keeps a view of the
breakers that are not closed (most are closed, so the view is usually empty and a task's check
is one dict lookup); outcomes are counted here and reported to the store in one call per batch
(``run_once``: what arrived during the previous call), whose answer refreshes the view.
Another replica's changes arrive as flow announcements (``breaker:<key>``), which make the
next step re-read every breaker.

What must stay true: a task is only started while its breaker is closed or with a probe permit
from the store; outcomes of tasks that were not probes never close a breaker; a change of
state is published once, by the process whose report or request caused it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import orjson

from tierq.engine.events import Batch
from tierq.engine.instruments import EngineMetrics
from tierq.engine.service import Service
from tierq.model import EventType, Task
from tierq.storage.breakers import CLOSED, HALF_OPEN, OPEN, BreakerState, BreakerStore, Report

log = logging.getLogger("tierq.flow")

# Task types whose breaker is per target host (their payload's ``url``).
HOST_TYPES = frozenset({"http", "webhook"})
_EVENT = {OPEN: EventType.BREAKER_OPENED, HALF_OPEN: EventType.BREAKER_HALF_OPEN}

Announce = Callable[[str], Awaitable[None]]
Publish = Callable[[Batch], Awaitable[None]]
FlowEvent = Callable[..., Batch]


def breaker_key(task: Task) -> str:
    """The breaker ``task`` answers to."""
    if task.breaker:
        return task.breaker
    if task.type in HOST_TYPES:
        try:
            url = orjson.loads(task.payload).get("url")
            host = urlsplit(url).netloc.rpartition("@")[2].lower() if isinstance(url, str) else ""
        except (orjson.JSONDecodeError, AttributeError, ValueError):
            host = ""
        if host:
            return f"{task.type}:{host}"
    return task.type


class Breakers(Service):
    name = "breakers"

    def __init__(
        self,
        store: BreakerStore,
        announce: Announce,
        publish: Publish,
        event: FlowEvent,
        instruments: EngineMetrics,
        clock: Callable[[], float],
        count_client_errors: bool,
    ) -> None:
        super().__init__()
        self.store = store
        self._announce = announce
        self._publish = publish
        self._event = event
        self._instruments = instruments
        self._clock = clock
        self.count_client_errors = count_client_errors
        # Breakers not closed, as last seen; a task of any other key starts at once.
        self.view: dict[str, BreakerState] = {}
        # key -> [calls, failures, probe successes, probe failures] since the last report.
        self._pending: dict[str, list[int]] = {}
        self._refresh = True  # read every breaker at the next step (start, announcements)
        # key -> until when this process was refused a probe (asks the store again after).
        self._refused: dict[str, float] = {}
        # (key, trips) -> when this process first found that probe phase due.
        self._phase_start: dict[tuple[str, int], float] = {}

    # ---- the workers' side -------------------------------------------------------------------

    def hold_until(self, key: str, now: float) -> float | None:
        """None: a task of ``key`` may start (closed), or must ask for a probe (``probe``);
        else when to look again (the task waits until then without spending an attempt)."""
        state = self.view.get(key)
        if state is None:
            return None
        retry = state.next_probe_at if state.next_probe_at is not None else now + 1.0
        if state.forced:
            return max(retry, now + self.store.policy.cooldown_s)
        if state.state == OPEN and now < retry:
            return retry
        refused = self._refused.get(key)
        if refused is not None and now < refused:
            return refused
        return None

    def needs_probe(self, key: str) -> bool:
        return key in self.view

    def tried_wait(self, key: str, now: float, spread_s: float) -> float | None:
        """A task that already failed against this outage probes only in the second half of
        a probe phase (``spread_s`` long, from when this process first found the breaker
        due), so probes are made with tasks that never ran while there are any: None = it
        may probe now, else when to look again."""
        state = self.view.get(key)
        if state is None:
            return None
        phase = (key, state.trips)
        start = self._phase_start.setdefault(phase, now)
        if len(self._phase_start) > 1000:  # old phases of breakers long closed
            self._phase_start = {phase: start}
        if now >= start + spread_s / 2:
            return None
        return start + spread_s / 2 + random.random() * spread_s / 2

    async def probe(self, key: str) -> float | None:
        """Ask the store for a probe permit: None = granted (run the task as a probe), else
        when to look again."""
        now = self._clock()
        granted, state = await self.store.acquire_probe(key, now)
        await self._apply([state], announce=True)
        if granted:
            return None
        until = state.next_probe_at if state.next_probe_at is not None else now + 1.0
        if until <= now:
            until = now + self.store.policy.cooldown_s
        self._refused[key] = until
        return until

    def probe_retry_delay(self, key: str) -> float:
        """When a failed probe of ``key`` runs again: after the phase that follows its
        re-opening, so the next phase probes with other tasks."""
        state = self.view.get(key)
        trips = state.trips if state is not None else 0
        return 2 * self.store.policy.cooldown(trips + 1)

    def record(self, key: str, failed: bool, probe: bool) -> None:
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = [0, 0, 0, 0]
            if len(self._pending) == 1:
                self.wake()
        if probe:
            counts[3 if failed else 2] += 1
        else:
            counts[0] += 1
            if failed:
                counts[1] += 1

    # ---- the reporting loop -----------------------------------------------------------------

    def on_announced(self, message: str) -> None:
        """A flow announcement (or "" after a lost subscription)."""
        if message == "" or message.startswith("breaker:"):
            self._refresh = True
            self.wake()

    def next_wait(self) -> float | None:
        # At once: outcomes that arrive during one report's round trip make the next batch
        # (as group commit does), so a trip is seen within one round trip of its threshold.
        return 0.0 if self._pending or self._refresh else None

    async def run_once(self) -> None:
        pending, self._pending = self._pending, {}
        if pending:
            # A batch lost to an outage of the store is not sent again: outcomes are
            # statistics, and the breaker judges the ones after it.
            reports = [Report(k, c[0], c[1], c[2], c[3]) for k, c in pending.items()]
            states = await self.store.report(reports, self._clock())
            await self._apply(states, announce=True)
        if self._refresh:
            self._refresh = False
            states = await self.store.states(self._clock())
            await self._apply(states, announce=False, complete=True)

    async def drain(self) -> None:
        if self._pending:
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("breakers: last report lost at shutdown (%s)", exc)

    async def _apply(
        self, states: list[BreakerState], announce: bool, complete: bool = False
    ) -> None:
        """Take the store's answer into the view; publish what changed here."""
        before = self.view
        view = {} if complete else dict(before)
        changed: list[BreakerState] = []
        for state in states:
            old = before.get(state.key)
            if state.state == CLOSED:
                view.pop(state.key, None)
                self._refused.pop(state.key, None)
            else:
                view[state.key] = state
            if (old.state if old else CLOSED) != state.state or (
                old is not None and old.trips != state.trips
            ):
                changed.append(state)
        if complete:
            changed += [
                BreakerState(k, CLOSED, 0, 0, 0, None, None) for k in before if k not in view
            ]
        self.view = view
        for state in changed:
            self._instruments.breaker_state(state.key, state.state)
        if not announce or not changed:
            return
        for state in changed:
            log.warning("breaker %s: %s", state.key, state.state.replace("_", "-"))
            kind = _EVENT.get(state.state, EventType.BREAKER_CLOSED)
            await self._publish(self._event(kind, breaker=state.key))
            await self._announce(f"breaker:{state.key}")

    async def set_state(self, key: str, state: str) -> BreakerState:
        """Operator: reset (``closed``) or force open."""
        result = await self.store.set_state(key, state, self._clock())
        await self._apply([result], announce=True)
        return result

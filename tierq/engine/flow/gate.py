"""The gate between the memory tier and a worker: may this task start now?

Asked only while something is engaged (a paused queue, a limited queue in embedded mode, a
breaker that is not closed), so the common path costs one attribute check per task.

- Paused queue: embedded, the task is parked here until the queue resumes; distributed, it is
  handed back to the dispatch tier (whose claims skip the queue) in one release per batch.
- Limited queue (embedded; distributed, the claim script enforces the limits for every
  replica at once): ``max_running`` and the start rate are counted here, and a task over
  them is parked until a slot frees or its start time comes.
- Breaker open: the task is not started and spends no attempt; its run_at moves to the next
  probe time (``defer``). Half-open: it runs only with a probe permit.

Parked tasks keep their memory slot (they are held); once a queue parks ``PARK_CAP`` tasks,
claims and submissions leave its further tasks in the lower tiers (``skip_queues``,
``may_hold``), so one stopped queue cannot fill the memory tier and starve the others.

What must stay true: a task the gate takes is parked, deferred or handed back, never dropped;
every slot counted at a start is given back by ``finished``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from tierq.engine.flow.breakers import Breakers, breaker_key
from tierq.engine.flow.controls import QueueControls
from tierq.engine.flusher import Flusher
from tierq.engine.held import HeldTasks
from tierq.engine.instruments import EngineMetrics
from tierq.model import Task, TaskState, Transition
from tierq.storage.base import Ack

log = logging.getLogger("tierq.flow")

# Parked tasks of one queue beyond which it is skipped by claims and submissions.
PARK_CAP = 256
Release = Callable[[Sequence[str]], Awaitable[int]]


class FlowGate:
    def __init__(
        self,
        controls: QueueControls,
        breakers: Breakers | None,
        held: HeldTasks,
        flusher: Flusher,
        release: Release,
        instruments: EngineMetrics,
        clock: Callable[[], float],
        node_id: str,
        shared: bool,
    ) -> None:
        self.controls = controls
        self._instruments = instruments
        self.breakers = breakers
        self._held = held
        self._memory = held.memory
        self._flusher = flusher
        self._release = release
        self._clock = clock
        self._node_id = node_id
        self._shared = shared
        self.parked: dict[str, collections.deque[Task]] = {}
        self.running: collections.Counter[str] = collections.Counter()
        self._slots: set[str] = set()  # the tasks that took a slot (embedded limits)
        self._tat: dict[str, float] = {}  # embedded rates: the next free start time (GCRA)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._to_release: list[str] = []
        self._releasing: asyncio.Task[None] | None = None

    @property
    def engaged(self) -> bool:
        controls = self.controls
        return bool(
            controls.paused
            or (controls.limited and not self._shared)
            or (self.breakers is not None and self.breakers.view)
        )

    # ---- what claims and submissions may bring in -----------------------------------------

    def skip_queues(self) -> Sequence[str]:
        if not self.parked:
            return tuple(self.controls.paused)
        full = [q for q, tasks in self.parked.items() if len(tasks) >= PARK_CAP]
        return tuple(self.controls.paused.union(full))

    def may_hold(self, task: Task) -> bool:
        """May a new submission be kept in this process's memory tier?"""
        queue = task.queue
        if queue in self.controls.paused:
            return False
        if queue in self.controls.limited:
            # Distributed: only a claim counts the queue's limits across replicas.
            return not self._shared and len(self.parked.get(queue, ())) < PARK_CAP
        return True

    # ---- the workers' side -------------------------------------------------------------------

    async def admit(self, task: Task) -> bool | None:
        """None: the gate took the task (it must not start); else whether it runs as a
        breaker probe. Called for a task just popped from the memory tier."""
        queue = task.queue
        controls = self.controls
        if queue in controls.paused:
            self._hold(task)
            return None
        limited = not self._shared and queue in controls.limited
        if limited and not self._slot_free(queue):
            self._instruments.flow_wait("limit")
            self._park(task)
            return None
        probe = False
        breakers = self.breakers
        if breakers is not None and breakers.view:
            key = breaker_key(task)
            now = self._clock()
            spread = breakers.store.policy.cooldown_s
            until = breakers.hold_until(key, now)
            if until is None and breakers.needs_probe(key):
                if task.attempt > task.attempt_base:
                    until = breakers.tried_wait(key, now, spread)
                if until is None:
                    until = await breakers.probe(key)
                    probe = until is None
                else:
                    spread = 0.0  # tried_wait spread it already
            if until is not None:
                self.defer(task, until, spread)
                return None
        if limited:
            self._take_slot(task)
        return probe

    def finished(self, task: Task) -> None:
        """A started task ended (however): its slot, if it took one, is free again."""
        if task.id not in self._slots:
            return
        self._slots.discard(task.id)
        queue = task.queue
        self.running[queue] -= 1
        if not self.running[queue]:
            del self.running[queue]
        self._let_go(queue)

    # ---- holding tasks back ----------------------------------------------------------------

    def defer(self, task: Task, until: float, spread_s: float = 0.0) -> None:
        """A breaker holds ``task`` back until ``until``: no attempt spent, its run_at moved.

        ``spread_s`` spreads the held tasks over that long after ``until``: once the breaker
        closes they do not all hit the service at once, and tasks that never ran come first
        (the first half), so probes are made with them, not with the few tasks that already
        failed against the outage (in flight as it tripped, or a failed probe)."""
        now = self._clock()
        if spread_s > 0:
            tried = task.attempt > task.attempt_base
            until += spread_s * (0.5 + random.random() / 2 if tried else random.random() / 2)
        task.run_at = until
        task.move(TaskState.SCHEDULED, now)
        self._instruments.flow_wait("breaker")
        self._memory.finished()
        if self._shared:
            self._flusher.add(
                Transition(
                    task.id, task.attempt, TaskState.SCHEDULED, now, run_at=until, task=task
                ),
                Ack(task.id, task.attempt + 1, TaskState.SCHEDULED, until, started=False),
            )
            self._held.forget(task.id)
        else:
            self._flusher.add(
                Transition(
                    task.id,
                    task.attempt,
                    TaskState.SCHEDULED,
                    now,
                    run_at=until,
                    lease_owner=self._node_id,
                    task=task,
                )
            )
            self._memory.push(task)

    def _hold(self, task: Task) -> None:
        self._instruments.flow_wait("paused")
        if not self._shared:
            self._park(task)
            return
        # Distributed: back to the dispatch tier, whose claims skip the paused queue.
        self._memory.finished()
        self._held.forget(task.id)
        self._to_release.append(task.id)
        if self._releasing is None or self._releasing.done():
            self._releasing = asyncio.get_running_loop().create_task(
                self._release_held(), name="tierq-flow-release"
            )

    async def _release_held(self) -> None:
        await asyncio.sleep(0)  # let the other workers' hand-backs join this batch
        while self._to_release:
            ids, self._to_release = self._to_release, []
            try:
                await self._release(ids)
            except Exception as exc:
                # The leases stay ours until we die (rescue), or the dispatch tier is rebuilt.
                log.warning("could not hand back %d tasks of paused queues: %s", len(ids), exc)

    def _park(self, task: Task) -> None:
        """Keep ``task`` here (its memory slot too) until its queue lets it start."""
        self.parked.setdefault(task.queue, collections.deque()).append(task)
        self._arm_rate_timer(task.queue)

    def on_controls(self, queues: set[str]) -> None:
        """These queues' controls changed: parked tasks that may start now go."""
        for queue in queues:
            self._let_go(queue)

    def _let_go(self, queue: str) -> None:
        """Put back into the memory tier as many parked tasks of ``queue`` as may start."""
        parked = self.parked.get(queue)
        if not parked:
            return
        control = self.controls.get(queue)
        if control is not None and control.paused:
            return
        free = len(parked)
        if control is not None and control.max_running is not None:
            free = min(free, control.max_running - self.running.get(queue, 0))
        if control is not None and control.interval_s is not None:
            free = min(free, 1 if self._tat.get(queue, 0.0) <= self._clock() else 0)
        memory = self._memory
        for _ in range(max(0, free)):
            task = parked.popleft()
            memory.finished()
            memory.push(task)
        if not parked:
            del self.parked[queue]
        else:
            self._arm_rate_timer(queue)

    # ---- slots (embedded) ------------------------------------------------------------------

    def _slot_free(self, queue: str) -> bool:
        control = self.controls.get(queue)
        if control is None:
            return True
        if control.max_running is not None and self.running.get(queue, 0) >= control.max_running:
            return False
        return control.interval_s is None or self._tat.get(queue, 0.0) <= self._clock()

    def _take_slot(self, task: Task) -> None:
        queue = task.queue
        self._slots.add(task.id)
        self.running[queue] += 1
        control = self.controls.get(queue)
        if control is not None and control.interval_s is not None:
            now = self._clock()
            self._tat[queue] = max(self._tat.get(queue, 0.0), now) + control.interval_s

    def _arm_rate_timer(self, queue: str) -> None:
        control = self.controls.get(queue)
        if control is None or control.interval_s is None or queue in self._timers:
            return
        delay = max(0.0, self._tat.get(queue, 0.0) - self._clock())
        loop = asyncio.get_running_loop()
        self._timers[queue] = loop.call_at(loop.time() + delay, self._rate_due, queue)

    def _rate_due(self, queue: str) -> None:
        self._timers.pop(queue, None)
        self._let_go(queue)

    async def close(self) -> None:
        """Shutdown (before the dispatch tier closes): timers off, the last hand-back done."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        releasing, self._releasing = self._releasing, None
        if releasing is not None:
            await releasing

    def drain_parked(self) -> list[Task]:
        """Shutdown: every parked task, for the hand-back (their memory slots freed)."""
        tasks = [t for q in self.parked.values() for t in q]
        self.parked.clear()
        for task in tasks:
            self._memory.finished()
            self._held.forget(task.id)
        return tasks

"""What this process holds: the tasks it may run or report on, and the memory room promised
to tasks on their way in.

A task is held from the moment it enters the memory tier (a submission kept here, or a claim)
until its last state change is durable in the record tier (or it is handed back). Reads see a
held copy before the record tier does.

What must stay true: a held task id maps to exactly one copy (two leases of one id in one
process would clash, see ``accept``); the room counts the memory tier's free slots less every
slot promised to a submission being committed or a claim in flight, so the memory bound holds
while both are outstanding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from tierq.engine.memory import MemoryTier
from tierq.model import TERMINAL_STATES, Task, Transition

log = logging.getLogger("tierq.engine")


class HeldTasks:
    def __init__(self, memory: MemoryTier) -> None:
        self.memory = memory
        self._tasks: dict[str, Task] = {}
        self._reserved = 0
        # Leases claimed for a task this process still holds an older copy of (the dispatch
        # tier was rebuilt under it): handed back once that copy is gone (``take_superseded``).
        self._superseded: set[str] = set()

    # ---- reads -----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def ids(self) -> set[str]:
        return set(self._tasks)

    # ---- memory room -----------------------------------------------------------------------

    def room(self) -> int:
        return self.memory.room() - self._reserved

    def reserve(self, slots: int) -> None:
        """Promise (or, negative, give back) memory slots to tasks on their way in."""
        self._reserved += slots

    # ---- taking tasks in ---------------------------------------------------------------------

    def hold(self, task: Task) -> None:
        """Hold a task that does not go into the memory tier (cancelled on arrival, say)."""
        self._tasks[task.id] = task

    def push(self, tasks: Sequence[Task]) -> None:
        """Hold tasks and queue them in the memory tier (a submission kept here)."""
        held = self._tasks
        for task in tasks:
            held[task.id] = task
        self.memory.push_many(tasks)

    def accept(self, tasks: Sequence[Task]) -> list[Task]:
        """Tasks leased to this process by a claim: returns the ones it does not hold yet
        (only those may go on). A task held already predates its new lease (a rebuild offered
        it again while it ran or waited here), so its report will be refused; keeping the new
        lease without the task would strand it (we stay alive, so nobody rescues it), and
        running both would clash on the id: the lease goes back once the old copy is gone."""
        held = self._tasks
        fresh = [t for t in tasks if t.id not in held]
        if len(fresh) < len(tasks):
            self._superseded.update(t.id for t in tasks if t.id in held)
        return fresh

    # ---- letting go --------------------------------------------------------------------------

    def forget(self, task_id: str) -> None:
        """This process no longer holds the task (handed to the shared tier)."""
        self._tasks.pop(task_id, None)

    def drop_queued(self) -> list[Task]:
        """Empty the memory tier and stop holding what it had queued (running tasks stay)."""
        dropped = self.memory.drain()
        held = self._tasks
        for task in dropped:
            held.pop(task.id, None)
        return dropped

    def superseded(self) -> frozenset[str]:
        """Ids whose newer lease waits for the stale copy held here to go."""
        return frozenset(self._superseded)

    def take_superseded(self, everything: bool = False) -> list[str]:
        """Superseded leases that may go back now: those whose stale copy is gone (or, at
        shutdown, all of them: the stale copy's report is refused whatever happens)."""
        if everything:
            gone = sorted(self._superseded)
            self._superseded = set()
            return gone
        gone = [i for i in self._superseded if i not in self._tasks]
        self._superseded.difference_update(gone)
        return gone

    def keep_superseded(self, ids: Iterable[str]) -> None:
        """Their hand-back failed: try again later."""
        self._superseded.update(ids)

    def settle(self, transitions: Iterable[Transition], refused: Iterable[str]) -> None:
        """A flushed batch is durable: stop holding the tasks it finished."""
        held = self._tasks
        terminal = TERMINAL_STATES
        for t in transitions:
            if t.state in terminal:
                task = held.get(t.task_id)
                # A newer attempt (a retry replayed since) keeps its copy.
                if task is not None and task.attempt <= t.attempt and task.state in terminal:
                    del held[t.task_id]
        for task_id in refused:
            self.drop_finished(task_id)

    def drop_finished(self, task_id: str) -> None:
        """The record tier will never hold this copy's outcome (a stale or refused report):
        stop serving a finished copy (reads fall back to the record)."""
        task = self._tasks.get(task_id)
        if task is not None and task.state in TERMINAL_STATES:
            del self._tasks[task_id]

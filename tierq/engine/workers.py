"""The worker pool: N asyncio workers popping from the memory tier and running handlers.

Each attempt ends in exactly one report to the flusher: succeeded, failed (retry scheduled or
dead-lettered), timed out, cancelled by a user, or interrupted at shutdown (handed back to the
queue). Handlers that can block run in a child task under the task's timeout, so a user's
cancel targets that child alone; cancelling a worker means shutdown, and the worker reports the
hand-back before re-raising.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import orjson

from tierq import tracing
from tierq.engine.backoff import retry_delay
from tierq.engine.flow.breakers import Breakers, breaker_key
from tierq.engine.flusher import Flusher
from tierq.engine.handlers.base import (
    HandlerFn,
    HandlerRegistry,
    PermanentError,
    RetryLater,
    TaskContext,
    Unavailable,
)
from tierq.engine.held import HeldTasks
from tierq.engine.instruments import EngineMetrics
from tierq.engine.leases import LeaseClock
from tierq.logs import ATTEMPT as LOG_ATTEMPT
from tierq.logs import REQUEST_ID as LOG_REQUEST_ID
from tierq.logs import TASK_ID as LOG_TASK_ID
from tierq.model import Outcome, Task, TaskState, Transition
from tierq.storage.base import Ack

log = logging.getLogger("tierq.worker")


class Gate(Protocol):
    """What a worker asks before it starts a task (engine/flow/gate.py)."""

    @property
    def running(self) -> Mapping[str, int]: ...

    @property
    def engaged(self) -> bool: ...

    async def admit(self, task: Task) -> bool | None: ...

    def finished(self, task: Task) -> None: ...


class _UserCancelled(Exception):
    """A user cancelled the running handler (not the worker: that is shutdown)."""


# At most this many tasks start per event-loop iteration, across all workers: tasks that never
# await (noop) would otherwise run back to back, and every request (its socket read, each store
# reply it waits for) waits through the whole iteration, several times per request. A budget
# per worker instead grows the iteration with the pool (BENCHMARKS.md, "turn budget").
TURN_TASKS = 64
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float
    max_s: float


class WorkerPool:
    def __init__(
        self,
        size: int,
        held: HeldTasks,
        flusher: Flusher,
        registry: HandlerRegistry,
        leases: LeaseClock,
        instruments: EngineMetrics,
        retry: RetryPolicy,
        sync_executor: Executor,
        clock: Callable[[], float],
        node_id: str,
        shared: bool,
    ) -> None:
        self.size = size
        self._held = held
        self._memory = held.memory
        self._flusher = flusher
        self._registry = registry
        self._leases = leases
        self._instruments = instruments
        self._retry = retry
        self._sync_executor = sync_executor
        self._clock = clock
        self._node_id = node_id
        # Distributed: every report settles the lease with the dispatch tier (an ack), and a
        # retry goes back to the shared queue; embedded, the retry waits here.
        self._shared = shared
        self.busy = 0
        # Handlers that can be interrupted run in a child task of their worker; a user's cancel
        # cancels that child only. A worker itself is only ever cancelled by shutdown, so a
        # cancel that arrives as a handler ends can never leak into the worker's next await.
        self._handlers: dict[str, asyncio.Task[object]] = {}
        self._running: set[str] = set()
        self._idle: asyncio.Event | None = None
        # Tasks started in this loop iteration (see TURN_TASKS); reset by a callback queued
        # when the first one starts, which runs first in the next iteration.
        self._turn_used = 0
        # Flow control (engine/flow): set by the engine once composed.
        self.gate: Gate | None = None
        self.breakers: Breakers | None = None

    def running_ids(self) -> list[str]:
        return list(self._running)

    def request_cancel(self, task_id: str) -> asyncio.Task[object] | None:
        """Cancel a running handler and return its task (to wait on); None when it is not
        running here or can no longer be interrupted (it has already returned)."""
        child = self._handlers.get(task_id)
        if child is None or child.done() or not child.cancel():
            return None
        return child

    async def wait_idle(self) -> None:
        while self.busy:
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            await self._idle.wait()

    async def run_worker(self, index: int) -> None:
        memory = self._memory
        flusher = self._flusher
        leases = self._leases
        clock = self._clock
        name = f"{self._node_id}/w{index}"
        while True:
            if self._turn_used >= TURN_TASKS:
                await asyncio.sleep(0)  # the next iteration, after its reset
                continue
            if clock() > leases.deadline:
                # This replica cannot prove its leases are alive (it was frozen, or Redis is
                # unreachable): starting a task now could duplicate a rescued attempt.
                await leases.wait_renewed()
                continue
            task = memory.pop_ready()
            if task is None:
                await memory.wait_ready()
                continue
            gate = self.gate
            probe = False
            if gate is not None and gate.engaged:
                admitted = await gate.admit(task)
                if admitted is None:
                    continue  # the gate took it: parked, deferred or handed back
                probe = admitted
            self._turn_used += 1
            if self._turn_used == 1:
                asyncio.get_running_loop().call_soon(self._new_turn)
            self.busy += 1
            self._running.add(task.id)
            verdict: bool | None = None
            # Every log line of the attempt (the handler's too) names the task and attempt.
            logged_task = LOG_TASK_ID.set(task.id)
            logged_attempt = LOG_ATTEMPT.set(task.attempt + 1)
            logged_request = LOG_REQUEST_ID.set(task.request_id)
            try:
                if tracing.ENABLED and tracing.sampled(task.traceparent):
                    verdict = await self._traced_attempt(task, name, probe)
                else:
                    verdict = await self._attempt(task, name, probe)
            finally:
                LOG_TASK_ID.reset(logged_task)
                LOG_ATTEMPT.reset(logged_attempt)
                LOG_REQUEST_ID.reset(logged_request)
                self._running.discard(task.id)
                self.busy -= 1
                memory.finished()
                if gate is not None and gate.running:
                    gate.finished(task)
                if verdict is not None and self.breakers is not None:
                    self.breakers.record(breaker_key(task), verdict, probe)
                if self.busy == 0 and self._idle is not None:
                    self._idle.set()
            if flusher.backlog >= flusher.max_buffer:
                await flusher.wait_room()

    def _new_turn(self) -> None:
        self._turn_used = 0

    async def _traced_attempt(self, task: Task, worker: str, probe: bool) -> bool | None:
        parent = task.traceparent
        attempt = task.attempt + 1
        with tracing.task_span(
            task.type, task.id, task.queue, attempt, parent, self._node_id
        ) as span:
            verdict = await self._attempt(task, worker, probe)
            tracing.finished(span, task.state.value, task.last_error)
            return verdict

    async def _attempt(self, task: Task, worker: str, probe: bool = False) -> bool | None:
        """Run one attempt and report it. Returns what a circuit breaker counts: True (what it
        calls was unavailable: a timeout, an ``Unavailable`` error, a connection error; a
        permanent error only if ``count_client_errors``), False (succeeded, or failed on its
        own: bad data, a bug), None (not a call: cancelled, interrupted, no handler)."""
        handler = self._registry.get(task.type)
        clock = self._clock
        now = clock()
        task.attempt += 1
        task.move(TaskState.RUNNING, now)
        task.started_at = now
        self._instruments.waited(task.type, now - task.run_at)
        if handler is None:
            # Registered at submit time but gone now (restarted without the module).
            self._finish(
                task,
                worker,
                now,
                TaskState.FAILED,
                Outcome.FAILED,
                error=f"no handler registered for type {task.type!r}",
            )
            return None
        loop = asyncio.get_running_loop()
        ctx = TaskContext(
            task.id,
            task.type,
            task.queue,
            task.attempt,
            task.payload,
            loop.time() + task.timeout_s,
            self._sync_executor,
            task.request_id,
        )
        try:
            if handler.instant:
                # Cannot await, overrun or be interrupted: no timer, no child task.
                value = await handler.run(ctx)
            else:
                self._flusher.add(
                    Transition(
                        task.id,
                        task.attempt,
                        TaskState.RUNNING,
                        now,
                        None,
                        now,
                        None,
                        None,
                        None,
                        self._node_id,
                        worker,
                        None,
                        task,
                    )
                )
                value = await self._interruptible(handler.run, ctx, task)
            result = None if value is None else orjson.dumps(value)
        except _UserCancelled:
            self._finish(
                task,
                worker,
                clock(),
                TaskState.CANCELLED,
                Outcome.CANCELLED,
                error="cancelled while running",
            )
            return None
        except asyncio.CancelledError:
            # Shutdown: the handler was cancelled with us; hand the task back, then go.
            self._hand_back(task, worker)
            raise
        except TimeoutError:
            self._failed(
                task,
                worker,
                Outcome.TIMED_OUT,
                f"timed out after {task.timeout_s:g}s",
                permanent=False,
                delay=self._after_probe(task, probe),
            )
        except PermanentError as exc:
            self._failed(task, worker, Outcome.FAILED, _describe(exc), permanent=True)
            return self.breakers is not None and self.breakers.count_client_errors
        except RetryLater as exc:
            self._failed(
                task, worker, Outcome.FAILED, _describe(exc), permanent=False, delay=exc.delay_s
            )
            return exc.unavailable
        except Exception as exc:
            delay = self._after_probe(task, probe)
            self._failed(task, worker, Outcome.FAILED, _describe(exc), False, delay)
            return isinstance(exc, Unavailable | ConnectionError)
        else:
            self._finish(
                task, worker, clock(), TaskState.SUCCEEDED, Outcome.SUCCEEDED, None, result
            )
            return False
        return True  # timed out

    def _after_probe(self, task: Task, probe: bool) -> float | None:
        """A failed probe's retry waits past the next probe phase: the tasks first in line
        would otherwise be every phase's probes and spend all their attempts on the outage."""
        if not probe or self.breakers is None:
            return None
        return self.breakers.probe_retry_delay(breaker_key(task))

    async def _interruptible(self, run: HandlerFn, ctx: TaskContext, task: Task) -> object:
        async def timed() -> object:
            async with asyncio.timeout(task.timeout_s):
                return await run(ctx)

        child = asyncio.get_running_loop().create_task(timed(), name=f"tierq-handler-{task.id}")
        self._handlers[task.id] = child
        try:
            # Cancelling this worker (shutdown) cancels the awaited child too.
            return await child
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if child.cancelled() and me is not None and me.cancelling() == 0:
                raise _UserCancelled from None
            raise
        finally:
            del self._handlers[task.id]

    def _failed(
        self,
        task: Task,
        worker: str,
        outcome: Outcome,
        error: str,
        permanent: bool,
        delay: float | None = None,
    ) -> None:
        now = self._clock()
        if permanent or task.attempts_left <= 0:
            self._finish(task, worker, now, TaskState.FAILED, outcome, error=error)
            return
        if delay is None:
            attempt = task.attempt - task.attempt_base
            delay = retry_delay(attempt, self._retry.base_s, self._retry.max_s)
        task.run_at = now + delay
        task.move(TaskState.SCHEDULED, now)
        task.last_error = error
        keep = not self._shared
        self._flusher.add(
            Transition(
                task.id,
                task.attempt,
                TaskState.SCHEDULED,
                now,
                run_at=task.run_at,
                started_at=task.started_at,
                finished_at=now,
                error=error,
                worker=worker,
                outcome=outcome,
                lease_owner=self._node_id if keep else None,
                task=task,
            ),
            None if keep else Ack(task.id, task.attempt, TaskState.SCHEDULED, task.run_at),
        )
        self._instruments.attempt_failed(task.type, final=False)
        if keep:
            # Embedded: the retry waits in this process's timer heap (still leased to it).
            self._memory.push(task)
        else:
            self._held.forget(task.id)

    def _finish(
        self,
        task: Task,
        worker: str,
        now: float,
        state: TaskState,
        outcome: Outcome,
        error: str | None = None,
        result: bytes | None = None,
    ) -> None:
        task.move(state, now)
        task.finished_at = now
        task.result = result
        if error is not None:
            task.last_error = error
        # Positional, in Transition's field order (run_at, started_at, finished_at, result,
        # error, lease_owner, worker, outcome, task): once per task, keywords cost twice as much.
        self._flusher.add(
            Transition(
                task.id,
                task.attempt,
                state,
                now,
                None,
                task.started_at,
                now,
                result,
                error,
                None,
                worker,
                outcome,
                task,
            ),
            Ack(task.id, task.attempt, state) if self._shared else None,
        )
        if state is TaskState.FAILED:
            self._instruments.attempt_failed(task.type, final=True)

    def _hand_back(self, task: Task, worker: str) -> None:
        """Shutdown interrupted the attempt: back to the queue, to run again elsewhere."""
        now = self._clock()
        task.move(TaskState.QUEUED, now)
        task.run_at = now
        self._flusher.add(
            Transition(
                task.id,
                task.attempt,
                TaskState.QUEUED,
                now,
                run_at=now,
                started_at=task.started_at,
                finished_at=now,
                worker=worker,
                outcome=Outcome.INTERRUPTED,
                error="interrupted by shutdown",
                lease_owner=None,
                task=task,
            ),
            Ack(task.id, task.attempt, TaskState.QUEUED, now) if self._shared else None,
        )


def _describe(exc: BaseException) -> str:
    """The error text kept with the task: type, message and the innermost frames."""
    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    if frames and not isinstance(exc, PermanentError | RetryLater):
        text += "\n" + "".join(traceback.format_list(frames))
    return text[:MAX_ERROR_CHARS]

"""The worker pool: N asyncio workers popping from the memory tier and running handlers.

Each attempt ends in exactly one report to the flusher: succeeded, failed (retry scheduled or
dead-lettered), timed out, cancelled by a user, or interrupted at shutdown (handed back to the
queue). A user's cancel reaches a running handler as a ``CancelledError`` that the worker then
consumes with ``Task.uncancel()``; any other cancellation (shutdown) is re-raised after the
hand-back is reported.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TYPE_CHECKING

import orjson

from tierq.engine.backoff import retry_delay
from tierq.engine.handlers.base import PermanentError, TaskContext
from tierq.engine.model import Outcome, Task, TaskState, Transition
from tierq.storage.base import Ack

if TYPE_CHECKING:
    from tierq.engine.engine import Engine

log = logging.getLogger("tierq.worker")

# Let other coroutines (HTTP, flusher) run at least this often while tasks complete without
# ever awaiting anything (noop): fairness, not speed.
YIELD_EVERY = 32
MAX_ERROR_CHARS = 4000


class WorkerPool:
    def __init__(self, engine: Engine, size: int) -> None:
        self._engine = engine
        self.size = size
        self.busy = 0
        self._running: dict[str, asyncio.Task[None]] = {}  # task id -> worker running it
        self._cancel_requested: set[str] = set()
        self._idle: asyncio.Event | None = None

    def running_ids(self) -> list[str]:
        return list(self._running)

    def request_cancel(self, task_id: str) -> bool:
        """Cancel a running task through its worker; False when it is not running here."""
        worker = self._running.get(task_id)
        if worker is None:
            return False
        self._cancel_requested.add(task_id)
        worker.cancel()
        return True

    async def wait_idle(self) -> None:
        while self.busy:
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            await self._idle.wait()

    async def run_worker(self, index: int) -> None:
        engine = self._engine
        memory = engine.memory
        flusher = engine.flusher
        name = f"{engine.node_id}/w{index}"
        me = asyncio.current_task()
        assert me is not None
        done = 0
        while True:
            task = memory.pop_ready()
            if task is None:
                await memory.wait_ready()
                continue
            if flusher.backlog >= flusher.max_buffer:
                await flusher.wait_room()
            self.busy += 1
            self._running[task.id] = me
            try:
                await self._attempt(task, name, me)
            finally:
                self._running.pop(task.id, None)
                self.busy -= 1
                memory.finished()
                if self.busy == 0 and self._idle is not None:
                    self._idle.set()
            done += 1
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def _attempt(self, task: Task, worker: str, me: asyncio.Task[None]) -> None:
        engine = self._engine
        handler = engine.registry.get(task.type)
        now = engine.clock()
        task.attempt += 1
        task.state = TaskState.RUNNING
        task.started_at = now
        task.updated_at = now
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
            return
        if not handler.instant:
            engine.flusher.add(
                Transition(
                    task.id,
                    task.attempt,
                    TaskState.RUNNING,
                    now,
                    started_at=now,
                    worker=worker,
                    lease_owner=engine.node_id,
                )
            )
        loop = asyncio.get_running_loop()
        ctx = TaskContext(
            task.id, task.type, task.queue, task.attempt, task.payload, loop.time() + task.timeout_s
        )
        try:
            if handler.instant:
                value = await handler.run(ctx)
            else:
                async with asyncio.timeout(task.timeout_s):
                    value = await handler.run(ctx)
            result = None if value is None else orjson.dumps(value)
        except asyncio.CancelledError:
            if task.id in self._cancel_requested:
                self._cancel_requested.discard(task.id)
                if me.uncancel() == 0:
                    self._finish(
                        task,
                        worker,
                        engine.clock(),
                        TaskState.CANCELLED,
                        Outcome.CANCELLED,
                        error="cancelled while running",
                    )
                    return
            self._hand_back(task, worker)
            raise
        except TimeoutError:
            self._failed(
                task,
                worker,
                Outcome.TIMED_OUT,
                f"timed out after {task.timeout_s:g}s",
                permanent=False,
            )
            return
        except PermanentError as exc:
            self._failed(task, worker, Outcome.FAILED, _describe(exc), permanent=True)
            return
        except Exception as exc:
            self._failed(task, worker, Outcome.FAILED, _describe(exc), permanent=False)
            return
        self._finish(
            task, worker, engine.clock(), TaskState.SUCCEEDED, Outcome.SUCCEEDED, result=result
        )

    def _failed(
        self, task: Task, worker: str, outcome: Outcome, error: str, permanent: bool
    ) -> None:
        engine = self._engine
        now = engine.clock()
        if permanent or task.attempts_left <= 0:
            self._finish(task, worker, now, TaskState.FAILED, outcome, error=error)
            return
        settings = engine.settings
        delay = retry_delay(
            task.attempt - task.attempt_base,
            settings.retry_base_ms / 1000.0,
            settings.retry_max_ms / 1000.0,
        )
        task.run_at = now + delay
        task.state = TaskState.SCHEDULED
        task.last_error = error
        task.updated_at = now
        keep = not engine.dispatch.capabilities.shared
        engine.flusher.add(
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
                lease_owner=engine.node_id if keep else None,
            ),
            None if keep else Ack(task.id, task.attempt, TaskState.SCHEDULED, task.run_at),
        )
        engine.on_attempt_failed(task, final=False)
        if keep:
            # Embedded: the retry waits in this process's timer heap (still leased to it).
            engine.memory.push(task)
        else:
            engine.forget(task.id)

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
        engine = self._engine
        task.state = state
        task.finished_at = now
        task.updated_at = now
        task.result = result
        if error is not None:
            task.last_error = error
        engine.flusher.add(
            Transition(
                task.id,
                task.attempt,
                state,
                now,
                started_at=task.started_at,
                finished_at=now,
                result=result,
                error=error,
                worker=worker,
                outcome=outcome,
                lease_owner=None,
            ),
            Ack(task.id, task.attempt, state) if engine.dispatch.capabilities.shared else None,
        )
        if state is TaskState.FAILED:
            engine.on_attempt_failed(task, final=True)

    def _hand_back(self, task: Task, worker: str) -> None:
        """Shutdown interrupted the attempt: back to the queue, to run again elsewhere."""
        engine = self._engine
        now = engine.clock()
        task.state = TaskState.QUEUED
        task.run_at = now
        task.updated_at = now
        engine.flusher.add(
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
            ),
            Ack(task.id, task.attempt, TaskState.QUEUED, now)
            if engine.dispatch.capabilities.shared
            else None,
        )


def _describe(exc: BaseException) -> str:
    """The error text kept with the task: type, message and the innermost frames."""
    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    if frames and not isinstance(exc, PermanentError):
        text += "\n" + "".join(traceback.format_list(frames))
    return text[:MAX_ERROR_CHARS]

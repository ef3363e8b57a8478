"""Background loops as services: ``start``/``stop`` for standalone use, ``run`` for use inside
the engine's TaskGroup, and ``run_once`` so tests can drive one step and wait on its result
instead of sleeping.

What must stay true: ``run`` returns only when ``request_stop`` was called (or it is
cancelled); an ordinary exception from ``run_once`` is logged and retried after a back-off,
never allowed to kill the loop; ``CancelledError`` always propagates.
"""

from __future__ import annotations

import abc
import asyncio
import logging

from tierq.storage.base import StoreUnavailable

log = logging.getLogger("tierq.engine")


class Service(abc.ABC):
    name: str = "service"
    error_backoff_s: float = 0.5

    def __init__(self) -> None:
        # Loop-bound objects are created lazily in the running loop, never here.
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def wake_event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def wake(self) -> None:
        self.wake_event.set()

    @abc.abstractmethod
    async def run_once(self) -> None:
        """One step of the loop."""

    @abc.abstractmethod
    def next_wait(self) -> float | None:
        """Seconds to wait before the next step unless woken (None = until woken)."""

    async def drain(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Called once after a requested stop (not on cancellation): finish queued work."""

    async def run(self) -> None:
        # stop() must stop the service however it runs: started by start(), or run inside
        # the engine's TaskGroup (where stop() had no task to wait for and did nothing).
        if self._task is None:
            self._task = asyncio.current_task()
        while not self._stopping:
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                # Expected while a tier is down: one line, no traceback, keep trying.
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, self.error_backoff_s)
                await self._sleep(self.error_backoff_s)
                continue
            except Exception:
                log.exception("%s: step failed; retrying in %.1fs", self.name, self.error_backoff_s)
                await self._sleep(self.error_backoff_s)
                continue
            if self._stopping:
                break
            await self._sleep(self.next_wait())
        await self.drain()

    async def _sleep(self, seconds: float | None) -> None:
        event = self.wake_event
        if event.is_set():
            event.clear()
            return
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        event.clear()

    def request_stop(self) -> None:
        self._stopping = True
        self.wake()

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name=f"tierq-{self.name}")

    async def stop(self) -> None:
        """Ask the loop to stop and wait until it has (its drain included)."""
        task, self._task = self._task, None
        if task is None:
            return
        self.request_stop()
        if task is not asyncio.current_task():
            await task

"""``AsyncClient``: the asyncio client (httpx). Every call is described in ``calls.py``; this
module sends them, retrying as ``Retry`` says."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx

from tierq.api.shapes import (
    BulkOut,
    EventOut,
    ExecutionsOut,
    KeyOut,
    ScheduleOut,
    TaskOut,
    TasksHealth,
)
from tierq.client import calls
from tierq.client.calls import DEFAULT_CHUNK, RETRY_STATUSES, Call, Retry
from tierq.client.errors import TransportError, WaitTimeout
from tierq.engine.recovery import RecoveryRun
from tierq.engine.reports import Health, Statistics, Workers
from tierq.engine.rollups import MetricsReport
from tierq.model import TERMINAL_STATES


class AsyncClient:
    """``AsyncClient("http://127.0.0.1:8080", api_key=...)``; ``async with`` it or await
    ``close()``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        api_key: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry: Retry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": "tierq-client"}
        if api_key:
            headers["X-API-Key"] = api_key
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.retry_policy = retry or Retry()
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call, read_timeout: float | None = None) -> Any:
        """One call, retried on a broken connection (when repeatable), 429, 502-504."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers={
                        **({"Content-Type": "application/json"} if call.body is not None else {}),
                        **call.headers,
                    },
                    timeout=read_timeout if read_timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                # Sent again only if it cannot have run, or running it twice is harmless.
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt >= self.retry_policy.attempts or not (call.repeatable or never_sent):
                    raise TransportError(f"{call.method} {call.path}: {exc!r}") from exc
                await asyncio.sleep(self.retry_policy.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retry_policy.attempts:
                await asyncio.sleep(
                    self.retry_policy.delay(attempt, response.headers.get("Retry-After"))
                )
                attempt += 1
                continue
            return calls.decode(call, response.status_code, response.content)

    # ---- tasks ---------------------------------------------------------------------------

    async def submit(self, type: str, payload: Any = None, **fields: Any) -> str:
        """Submit one task; its id. An idempotency key is added when none is given, so a
        submission retried after a broken connection never makes a second task."""
        task: TaskOut = await self.send(calls.submit(calls.task_body(type, payload, fields)))
        return task.id

    async def submit_many(
        self,
        tasks: Iterable[Mapping[str, Any]],
        chunk_size: int = DEFAULT_CHUNK,
        concurrency: int = 1,
    ) -> list[str]:
        """Submit task dicts in batches of ``chunk_size`` (read lazily), up to
        ``concurrency`` batches in flight; their ids, in order."""
        chunks = self.iter_submit_many(tasks, chunk_size, concurrency)
        return [i async for ids in chunks for i in ids]

    async def iter_submit_many(
        self,
        tasks: Iterable[Mapping[str, Any]],
        chunk_size: int = DEFAULT_CHUNK,
        concurrency: int = 1,
    ) -> AsyncIterator[list[str]]:
        """As ``submit_many``, yielding each batch's ids in order as it is committed. At most
        ``concurrency`` batches are read ahead and in flight: memory stays bounded."""
        in_flight: collections.deque[asyncio.Task[list[str]]] = collections.deque()
        try:
            for chunk in calls.keyed_chunks(tasks, chunk_size):
                in_flight.append(asyncio.create_task(self.submit_batch(chunk)))
                if len(in_flight) >= max(1, concurrency):
                    yield await in_flight.popleft()
            while in_flight:
                yield await in_flight.popleft()
        finally:
            # Left early (an error, or the caller stopped): the batches still in flight are
            # cancelled and awaited, none is left running.
            for pending in in_flight:
                pending.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def submit_batch(self, tasks: list[dict[str, Any]]) -> list[str]:
        """One batch, one request, one commit: the ids in order. Tasks without an
        idempotency key are sent as they are (``submit_many`` adds keys)."""
        answer = await self.send(calls.submit_batch(tasks))
        ids: list[str] = answer.ids
        return ids

    async def get(self, task_id: str) -> TaskOut:
        result: TaskOut = await self.send(calls.get(task_id))
        return result

    # The name the sync client has: the same call in both.
    async def wait(self, task_id: str, timeout: float = 30.0) -> TaskOut:  # noqa: ASYNC109
        """The task once it has ended (succeeded, failed, cancelled); WaitTimeout if it has
        not within ``timeout``. Long-polls (``wait_seconds``) instead of polling."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            wait_s = min(left, calls.MAX_WAIT_PER_CALL_S)
            task: TaskOut = await self.send(calls.get(task_id, wait_s), read_timeout=wait_s + 30)
            if task.status in TERMINAL_STATES:
                return task
            if time.monotonic() >= deadline:
                raise WaitTimeout(task)

    async def cancel(self, task_id: str) -> TaskOut:
        result: TaskOut = await self.send(calls.cancel(task_id))
        return result

    async def retry(self, task_id: str) -> TaskOut:
        """Run a failed or cancelled task again."""
        result: TaskOut = await self.send(calls.retry(task_id))
        return result

    async def executions(self, task_id: str) -> ExecutionsOut:
        result: ExecutionsOut = await self.send(calls.executions(task_id))
        return result

    async def list(self, page_size: int = 100, **filters: Any) -> AsyncIterator[TaskOut]:
        """Every task matching the filters (status, type, queue, priority, schedule_id),
        newest first, fetched page by page as the iteration goes."""
        after = None
        while True:
            page = await self.send(calls.page(filters, after, page_size))
            for item in page.items:
                yield item
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after

    async def cancel_matching(self, key: str | None = None, **filters: Any) -> BulkOut:
        result: BulkOut = await self.send(calls.bulk("cancel", filters, key))
        return result

    async def retry_matching(self, key: str | None = None, **filters: Any) -> BulkOut:
        result: BulkOut = await self.send(calls.bulk("retry", filters, key))
        return result

    # ---- the deployment ------------------------------------------------------------------

    async def statistics(self) -> Statistics:
        result: Statistics = await self.send(calls.statistics())
        return result

    async def health(self) -> Health:
        result: Health = await self.send(calls.health())
        return result

    async def workers(self) -> Workers:
        result: Workers = await self.send(calls.workers())
        return result

    async def metrics(
        self, minutes: float = 60, bucket_seconds: int | None = None
    ) -> MetricsReport:
        """Throughput, failure rate and latency percentiles of the last ``minutes``."""
        result: MetricsReport = await self.send(calls.metrics(minutes, bucket_seconds))
        return result

    async def tasks_health(self) -> TasksHealth:
        result: TasksHealth = await self.send(calls.tasks_health())
        return result

    async def recover(self) -> RecoveryRun:
        """Run the server's recovery passes now (an admin's call)."""
        result: RecoveryRun = await self.send(calls.recover())
        return result

    async def queues(self) -> Any:
        return (await self.send(calls.queues())).items

    async def pause_queue(self, queue: str) -> Any:
        return await self.send(calls.queue_action(queue, "pause"))

    async def resume_queue(self, queue: str) -> Any:
        return await self.send(calls.queue_action(queue, "resume"))

    # ---- events --------------------------------------------------------------------------

    async def events(
        self, after: str | None = None, follow: bool = True, **filters: Any
    ) -> AsyncIterator[EventOut]:
        """Events from ``after`` (a cursor; None: from now when following, else from the
        oldest kept). Following, a dropped stream is resumed from the last event seen."""
        if not follow:
            while True:
                page = await self.send(calls.events_page(filters, after, 1000))
                for item in page.items:
                    yield item
                if not page.items or page.next_cursor is None:
                    return
                after = page.next_cursor
        parser = calls.EventParser()
        parser.last_id = after
        attempt = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if parser.last_id:
                headers["Last-Event-ID"] = parser.last_id
            try:
                async with self._http.stream(
                    "GET",
                    "/api/v1/events",
                    params=calls.stream_params(filters),
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=None),
                ) as response:
                    if response.status_code != 200:
                        calls.decode(
                            calls.Call("GET", "/api/v1/events"),
                            response.status_code,
                            await response.aread(),
                        )
                    attempt = 0
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield event
            except httpx.TransportError:
                pass  # resumed below from the last event seen
            if attempt >= self.retry_policy.attempts:
                raise TransportError("the event stream keeps dropping")
            await asyncio.sleep(self.retry_policy.delay(attempt, None))
            attempt += 1

    # ---- schedules and keys ----------------------------------------------------------------

    async def create_schedule(self, **spec: Any) -> ScheduleOut:
        result: ScheduleOut = await self.send(calls.create_schedule(spec))
        return result

    async def schedules(self) -> AsyncIterator[ScheduleOut]:
        after = None
        while True:
            page = await self.send(calls.schedules(after))
            for item in page.items:
                yield item
            if not page.has_more:
                return
            after = page.next_after

    async def schedule(self, schedule_id: str) -> ScheduleOut:
        result: ScheduleOut = await self.send(calls.schedule(schedule_id))
        return result

    async def pause_schedule(self, schedule_id: str) -> ScheduleOut:
        result: ScheduleOut = await self.send(calls.schedule(schedule_id, "pause", "POST"))
        return result

    async def resume_schedule(self, schedule_id: str) -> ScheduleOut:
        result: ScheduleOut = await self.send(calls.schedule(schedule_id, "resume", "POST"))
        return result

    async def trigger_schedule(self, schedule_id: str) -> TaskOut:
        result: TaskOut = await self.send(calls.schedule(schedule_id, "trigger", "POST"))
        return result

    async def delete_schedule(self, schedule_id: str) -> None:
        await self.send(calls.schedule(schedule_id, None, "DELETE"))

    async def create_key(self, name: str, role: str, tenant: str | None = None) -> KeyOut:
        """A new API key; its ``secret`` is in this answer only."""
        result: KeyOut = await self.send(calls.create_key(name, role, tenant))
        return result

    async def keys(self) -> Any:
        return (await self.send(calls.keys())).items

    async def revoke_key(self, key_id: str) -> KeyOut:
        result: KeyOut = await self.send(calls.key(key_id, "revoke"))
        return result

    async def rotate_key(self, key_id: str) -> KeyOut:
        result: KeyOut = await self.send(calls.key(key_id, "rotate"))
        return result

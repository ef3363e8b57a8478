"""``Client``: the blocking client (httpx). Every call is described in ``calls.py``; this
module sends them, retrying as ``Retry`` says."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
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


class Client:
    """``Client("http://127.0.0.1:8080", api_key=...)``; use as a context manager or call
    ``close()``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        api_key: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retry: Retry | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": "tierq-client"}
        if api_key:
            headers["X-API-Key"] = api_key
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.retry_policy = retry or Retry()
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call, read_timeout: float | None = None) -> Any:
        """One call, retried on a broken connection (when repeatable), 429, 502-504."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
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
                time.sleep(self.retry_policy.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retry_policy.attempts:
                time.sleep(self.retry_policy.delay(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            return calls.decode(call, response.status_code, response.content)

    # ---- tasks ---------------------------------------------------------------------------

    def submit(self, type: str, payload: Any = None, **fields: Any) -> str:
        """Submit one task; its id. An idempotency key is added when none is given, so a
        submission retried after a broken connection never makes a second task."""
        task: TaskOut = self.send(calls.submit(calls.task_body(type, payload, fields)))
        return task.id

    def submit_many(
        self, tasks: Iterable[Mapping[str, Any]], chunk_size: int = DEFAULT_CHUNK
    ) -> list[str]:
        """Submit task dicts in batches of ``chunk_size`` (read lazily); their ids, in order."""
        return [i for ids in self.iter_submit_many(tasks, chunk_size) for i in ids]

    def iter_submit_many(
        self, tasks: Iterable[Mapping[str, Any]], chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[list[str]]:
        """As ``submit_many``, yielding each batch's ids as it is committed."""
        for chunk in calls.keyed_chunks(tasks, chunk_size):
            yield self.send(calls.submit_batch(chunk)).ids

    def submit_batch(self, tasks: list[dict[str, Any]]) -> list[str]:
        """One batch, one request, one commit: the ids in order. Tasks without an
        idempotency key are sent as they are (``submit_many`` adds keys)."""
        answer = self.send(calls.submit_batch(tasks))
        ids: list[str] = answer.ids
        return ids

    def get(self, task_id: str) -> TaskOut:
        result: TaskOut = self.send(calls.get(task_id))
        return result

    def wait(self, task_id: str, timeout: float = 30.0) -> TaskOut:
        """The task once it has ended (succeeded, failed, cancelled); WaitTimeout if it has
        not within ``timeout``. Long-polls (``wait_seconds``) instead of polling."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            wait_s = min(left, calls.MAX_WAIT_PER_CALL_S)
            task: TaskOut = self.send(calls.get(task_id, wait_s), read_timeout=wait_s + 30)
            if task.status in TERMINAL_STATES:
                return task
            if time.monotonic() >= deadline:
                raise WaitTimeout(task)

    def cancel(self, task_id: str) -> TaskOut:
        result: TaskOut = self.send(calls.cancel(task_id))
        return result

    def retry(self, task_id: str) -> TaskOut:
        """Run a failed or cancelled task again."""
        result: TaskOut = self.send(calls.retry(task_id))
        return result

    def executions(self, task_id: str) -> ExecutionsOut:
        result: ExecutionsOut = self.send(calls.executions(task_id))
        return result

    def list(self, page_size: int = 100, **filters: Any) -> Iterator[TaskOut]:
        """Every task matching the filters (status, type, queue, priority, schedule_id),
        newest first, fetched page by page as the iteration goes."""
        after = None
        while True:
            page = self.send(calls.page(filters, after, page_size))
            yield from page.items
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after

    def cancel_matching(self, key: str | None = None, **filters: Any) -> BulkOut:
        result: BulkOut = self.send(calls.bulk("cancel", filters, key))
        return result

    def retry_matching(self, key: str | None = None, **filters: Any) -> BulkOut:
        result: BulkOut = self.send(calls.bulk("retry", filters, key))
        return result

    # ---- the deployment ------------------------------------------------------------------

    def statistics(self) -> Statistics:
        result: Statistics = self.send(calls.statistics())
        return result

    def health(self) -> Health:
        result: Health = self.send(calls.health())
        return result

    def workers(self) -> Workers:
        result: Workers = self.send(calls.workers())
        return result

    def metrics(self, minutes: float = 60, bucket_seconds: int | None = None) -> MetricsReport:
        """Throughput, failure rate and latency percentiles of the last ``minutes``."""
        result: MetricsReport = self.send(calls.metrics(minutes, bucket_seconds))
        return result

    def tasks_health(self) -> TasksHealth:
        result: TasksHealth = self.send(calls.tasks_health())
        return result

    def recover(self) -> RecoveryRun:
        """Run the server's recovery passes now (an admin's call)."""
        result: RecoveryRun = self.send(calls.recover())
        return result

    def queues(self) -> Any:
        return self.send(calls.queues()).items

    def pause_queue(self, queue: str) -> Any:
        return self.send(calls.queue_action(queue, "pause"))

    def resume_queue(self, queue: str) -> Any:
        return self.send(calls.queue_action(queue, "resume"))

    # ---- events --------------------------------------------------------------------------

    def events(
        self, after: str | None = None, follow: bool = True, **filters: Any
    ) -> Iterator[EventOut]:
        """Events from ``after`` (a cursor; None: from now when following, else from the
        oldest kept). Following, a dropped stream is resumed from the last event seen."""
        if not follow:
            while True:
                page = self.send(calls.events_page(filters, after, 1000))
                yield from page.items
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
                with self._http.stream(
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
                            response.read(),
                        )
                    attempt = 0
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield event
            except httpx.TransportError:
                pass  # resumed below from the last event seen
            if attempt >= self.retry_policy.attempts:
                raise TransportError("the event stream keeps dropping")
            time.sleep(self.retry_policy.delay(attempt, None))
            attempt += 1

    # ---- schedules and keys ----------------------------------------------------------------

    def create_schedule(self, **spec: Any) -> ScheduleOut:
        result: ScheduleOut = self.send(calls.create_schedule(spec))
        return result

    def schedules(self) -> Iterator[ScheduleOut]:
        after = None
        while True:
            page = self.send(calls.schedules(after))
            yield from page.items
            if not page.has_more:
                return
            after = page.next_after

    def schedule(self, schedule_id: str) -> ScheduleOut:
        result: ScheduleOut = self.send(calls.schedule(schedule_id))
        return result

    def pause_schedule(self, schedule_id: str) -> ScheduleOut:
        result: ScheduleOut = self.send(calls.schedule(schedule_id, "pause", "POST"))
        return result

    def resume_schedule(self, schedule_id: str) -> ScheduleOut:
        result: ScheduleOut = self.send(calls.schedule(schedule_id, "resume", "POST"))
        return result

    def trigger_schedule(self, schedule_id: str) -> TaskOut:
        result: TaskOut = self.send(calls.schedule(schedule_id, "trigger", "POST"))
        return result

    def delete_schedule(self, schedule_id: str) -> None:
        self.send(calls.schedule(schedule_id, None, "DELETE"))

    def create_key(self, name: str, role: str, tenant: str | None = None) -> KeyOut:
        """A new API key; its ``secret`` is in this answer only."""
        result: KeyOut = self.send(calls.create_key(name, role, tenant))
        return result

    def keys(self) -> Any:
        return self.send(calls.keys()).items

    def revoke_key(self, key_id: str) -> KeyOut:
        result: KeyOut = self.send(calls.key(key_id, "revoke"))
        return result

    def rotate_key(self, key_id: str) -> KeyOut:
        result: KeyOut = self.send(calls.key(key_id, "rotate"))
        return result

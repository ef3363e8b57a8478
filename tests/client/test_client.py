"""``tierq.client`` against live servers, embedded and distributed: submissions (one, many,
retried), waiting, paging, cancel and retry, errors with their field path, and the event
stream resumed across a server restart."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.client.conftest import Live
from tierq.client import ApiError, AsyncClient, Client, Retry, WaitTimeout
from tierq.model import TaskState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_submit_wait_and_read_back(live: Live) -> None:
    with Client(live.url) as tq:
        task_id = tq.submit("dummy", {"result": {"ok": 1}}, queue="images", priority="HIGH")
        task = tq.wait(task_id, timeout=30)
        assert task.status is TaskState.SUCCEEDED
        assert (task.queue, task.priority) == ("images", 10)
        assert bytes(task.result) == b'{"ok":1}'
        assert [e.outcome for e in tq.executions(task_id).items] == ["succeeded"]
        # An explicit key names the same task; the automatic keys are new each call.
        first = tq.submit("noop", idempotency_key="order-7")
        assert tq.submit("noop", idempotency_key="order-7") == first
        assert tq.submit("noop") != tq.submit("noop")


def test_wait_gives_up_with_the_task_as_last_seen(live: Live) -> None:
    with Client(live.url) as tq:
        task_id = tq.submit("dummy", {"sleep_ms": 5000})
        with pytest.raises(WaitTimeout) as raised:
            tq.wait(task_id, timeout=0.5)
        assert raised.value.task.id == task_id
        assert raised.value.task.status in (TaskState.QUEUED, TaskState.RUNNING)
        assert tq.cancel(task_id).id == task_id
        assert tq.wait(task_id, timeout=10).status is TaskState.CANCELLED
        assert tq.retry(task_id).status is TaskState.QUEUED


def test_submit_many_streams_chunks_in_order(live: Live) -> None:
    produced = 0

    def tasks() -> Iterator[dict[str, object]]:
        nonlocal produced
        for i in range(2_500):
            produced += 1
            yield {"type": "noop", "name": f"n{i}"}

    with Client(live.url) as tq:
        chunks = tq.iter_submit_many(tasks(), chunk_size=1_000)
        first = next(chunks)
        assert len(first) == 1_000 and produced == 1_000  # read lazily, chunk by chunk
        ids = first + [i for chunk in chunks for i in chunk]
        assert len(ids) == len(set(ids)) == 2_500
        assert [tq.get(ids[k]).name for k in (0, 1_234, 2_499)] == ["n0", "n1234", "n2499"]


def test_errors_carry_the_code_message_and_field_path(live: Live) -> None:
    with Client(live.url) as tq:
        with pytest.raises(ApiError) as raised:
            tq.submit_many([{"type": "noop"}, {"type": "noop", "queue": "no spaces"}])
        assert (raised.value.status, raised.value.code) == (422, "validation_error")
        assert raised.value.path == "$[1].queue"
        with pytest.raises(ApiError) as missing:
            tq.get("01a25166-a9e1-7000-9e42-cc4fda64a9f8")
        assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_list_iterates_every_page(live: Live) -> None:
    with Client(live.url) as tq:
        ids = tq.submit_many({"type": "noop", "queue": f"q-{live.mode}"} for _ in range(7))
        listed = [t.id for t in tq.list(page_size=2, queue=f"q-{live.mode}")]
        assert listed == list(reversed(ids))  # newest first, across four pages


class DropFirstAnswer:
    """A TCP proxy that passes the first request to the server and closes the connection
    before the answer reaches the client: the call ran, but the client cannot know."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.sock.close()  # the accept loop ends with an OSError

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(
                target=self._pipe, args=(client, self.connections), daemon=True
            ).start()

    def _pipe(self, client: socket.socket, number: int) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        if number == 1:
            upstream.sendall(client.recv(65536))
            upstream.recv(65536)  # the server answered (the task exists) ...
            client.close()  # ... and the client never hears it
            upstream.close()
            return

        def copy(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                dst.close()

        threading.Thread(target=copy, args=(upstream, client), daemon=True).start()
        copy(client, upstream)


def test_a_submit_retried_after_a_lost_answer_makes_one_task(live: Live) -> None:
    proxy = DropFirstAnswer(live.server.port)
    try:
        with Client(f"http://127.0.0.1:{proxy.port}", retry=Retry(base_s=0.05)) as tq:
            task_id = tq.submit("noop", name="once")
            assert proxy.connections >= 2  # the first answer was lost, the call was resent
    finally:
        proxy.close()
    with Client(live.url) as direct:
        named = [t for t in direct.list() if t.name == "once"]
        assert [t.id for t in named] == [task_id]


async def test_async_client_and_the_stream_resumed_across_a_restart(live: Live) -> None:
    async with AsyncClient(live.url, retry=Retry(attempts=40, base_s=0.1, cap_s=0.5)) as tq:
        first = await tq.submit("noop", name="before")
        await tq.wait(first, timeout=30)
        cursor = None
        async for event in tq.events(after=None, follow=False):
            cursor = event.cursor
        assert cursor is not None
        # The first task's own event may land in the log just after the page was read: it is
        # left out below, whichever side of the cursor it fell on.
        followed = tq.events(after=cursor, event="succeeded")
        seen: list[str] = []

        async def read(count: int) -> None:
            async for event in followed:
                assert event.event == "succeeded" and event.task_id is not None
                if event.task_id != first:
                    seen.append(event.task_id)
                if len(seen) == count:
                    return

        try:
            second = await tq.submit("noop", name="second")
            await asyncio.wait_for(read(1), 30)
            await live.restart()  # the stream drops; the client resumes after the last event
            third = await tq.submit("noop", name="third")
            await asyncio.wait_for(read(2), 60)
        finally:
            await followed.aclose()
        assert seen == [second, third]  # nothing missed, nothing twice
        assert (await tq.statistics()).total >= 3


async def test_async_submit_many_keeps_order_with_batches_in_flight(live: Live) -> None:
    async with AsyncClient(live.url) as tq:
        tasks = ({"type": "noop", "name": f"c{i}"} for i in range(1_050))
        ids = await tq.submit_many(tasks, chunk_size=100, concurrency=3)
        assert len(ids) == len(set(ids)) == 1_050
        names = [(await tq.get(ids[k])).name for k in (0, 99, 100, 777, 1_049)]
        assert names == ["c0", "c99", "c100", "c777", "c1049"]

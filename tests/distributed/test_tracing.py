"""OpenTelemetry across two replicas, with the SDK's in-memory exporter: the caller's
``traceparent`` is continued by the HTTP span, the submission's span is stored with each
task, and the attempt's span joins that trace on whichever replica runs it; with tracing
off, no span is made and no traceparent stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.distributed.conftest import Cluster
from tests.distributed.test_http import Client, call, wait_status
from tierq import tracing
from tierq.api.app import create_app
from tierq.api.routes import ENGINE

pytestmark = pytest.mark.distributed

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.setup(True, provider)
    try:
        yield exporter
    finally:
        tracing.setup(False)


@pytest.fixture
async def replicas(cluster: Cluster) -> AsyncIterator[tuple[Client, Client]]:
    made: list[Client] = []
    try:
        for node in ("a", "b"):
            # The submitting replica keeps two tasks in memory: the rest go to the dispatch
            # tier, where the other replica claims them too.
            settings = cluster.settings(node, workers=2, memory_limit=2 if node == "a" else 100)
            client = TestClient(TestServer(create_app(settings)))
            await client.start_server()
            made.append(client)
        yield made[0], made[1]
    finally:
        for client in reversed(made):
            await client.close()


async def test_a_task_attempt_joins_the_submitters_trace_on_any_replica(
    spans: InMemorySpanExporter, replicas: tuple[Client, Client]
) -> None:
    a, b = replicas
    headers = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
    spec = {"type": "dummy", "payload": {"sleep_ms": 40}}
    batch = await call(a, "POST", "/api/v1/tasks/batch", 201, json=[spec] * 24, headers=headers)
    for task_id in batch["ids"]:
        await wait_status(b, task_id, "succeeded")
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.name == "POST /api/v1/tasks/batch"]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    (submit,) = [s for s in finished if s.name == "tierq.submit"]
    assert submit.parent is not None and submit.parent.span_id == server.context.span_id
    assert submit.attributes is not None and submit.attributes["tierq.tasks"] == 24
    attempts = [s for s in finished if s.name == "tierq.task dummy"]
    assert sorted(str(s.attributes["tierq.task.id"]) for s in attempts) == sorted(batch["ids"])
    for attempt in attempts:
        assert attempt.context.trace_id == server.context.trace_id
        assert attempt.parent is not None and attempt.parent.span_id == submit.context.span_id
        assert attempt.attributes["tierq.task.state"] == "succeeded"
    nodes = {s.attributes["tierq.node"] for s in attempts}
    assert nodes == {"a", "b"}, nodes  # both replicas ran some: the trace crossed them
    stored = await b.app[ENGINE].get(batch["ids"][0])  # type: ignore[index]
    assert stored.traceparent == f"00-{TRACE_ID}-{format(submit.context.span_id, '016x')}-01"


async def test_a_failed_attempt_is_an_error_span(
    spans: InMemorySpanExporter, replicas: tuple[Client, Client]
) -> None:
    a, b = replicas
    spec = {"type": "dummy", "payload": {"fail_always": True}, "max_retries": 0}
    task = await call(a, "POST", "/api/v1/tasks", 201, json=spec)
    await wait_status(b, task["id"], "failed")
    (attempt,) = [s for s in spans.get_finished_spans() if s.name == "tierq.task dummy"]
    assert attempt.status.status_code.name == "ERROR"
    assert "fail_always" in (attempt.status.description or "")


async def test_with_tracing_off_nothing_is_traced(replicas: tuple[Client, Client]) -> None:
    a, b = replicas
    assert not tracing.ENABLED
    headers = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
    task = await call(a, "POST", "/api/v1/tasks", 201, json={"type": "noop"}, headers=headers)
    await wait_status(b, task["id"], "succeeded")
    stored = await b.app[ENGINE].get(task["id"])  # type: ignore[index]
    assert stored.traceparent is None


def test_an_attempt_of_a_sampled_out_submission_makes_no_span() -> None:
    base = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
    assert [tracing.sampled(base + flags) for flags in ("00", "01", "02", "03")] == [
        False,
        True,
        False,  # 02 is the "random trace id" flag: not sampled
        True,
    ]
    assert tracing.sampled(None)  # submitted untraced: the sampler decides


async def test_sampled_out_submissions_make_no_attempt_spans(
    replicas: tuple[Client, Client],
) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.setup(True, provider)
    try:
        a, b = replicas
        batch = await call(a, "POST", "/api/v1/tasks/batch", 201, json=[{"type": "noop"}] * 5)
        for task_id in batch["ids"]:
            await wait_status(b, task_id, "succeeded")
        stored = await b.app[ENGINE].get(batch["ids"][0])  # type: ignore[index]
        assert stored.traceparent is not None and not tracing.sampled(stored.traceparent)
        assert exporter.get_finished_spans() == ()
    finally:
        tracing.setup(False)

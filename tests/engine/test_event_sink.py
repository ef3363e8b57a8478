"""The AMQP event sink against the real RabbitMQ the test set-up provides: every event reaches
the exchange, confirmed, with its routing key and message id; after the broker drops every
connection the sink reconnects and nothing published since is lost (at least once)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest

from tests.helpers import AMQP_URL, wait_for

from .conftest import EngineFactory, make_task, submit


class Consumer:
    """A durable queue bound to the test's exchange (every routing key), read by a robust
    connection of the test's own."""

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.queue_name = f"{exchange}.all"
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []
        self._connection: Any = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(AMQP_URL)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(self.queue_name, durable=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_message)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append(message)
        await message.ack()

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(m.body) for m in self.messages]

    async def stop(self) -> None:
        if self._connection is not None:
            channel = await self._connection.channel()
            await channel.queue_delete(self.queue_name)
            await channel.exchange_delete(self.exchange)
            await self._connection.close()


@pytest.fixture
async def consumer() -> AsyncIterator[Consumer]:
    c = Consumer(f"tierq-test-{uuid.uuid4().hex[:8]}")
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def kinds_by_task(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e["task_id"], []).append(e["event"])
    return out


async def test_every_event_reaches_the_exchange(
    make_engine: EngineFactory, consumer: Consumer
) -> None:
    engine = await make_engine(amqp_url=AMQP_URL, amqp_exchange=consumer.exchange)
    ids = await submit(engine, *(make_task(engine, "noop", queue="emails") for _ in range(20)))
    await wait_for(lambda: len(consumer.messages) >= 60, timeout=15)
    assert kinds_by_task(consumer.events()) == {
        i: ["submitted", "started", "succeeded"] for i in ids
    }
    message = consumer.messages[-1]
    assert message.routing_key == "emails.succeeded"
    assert message.content_type == "application/json" and message.type == "succeeded"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id is not None and message.message_id.startswith(ids[-1])
    assert len({m.message_id for m in consumer.messages}) == 60


async def test_the_sink_reconnects_after_the_broker_drops_it(
    make_engine: EngineFactory, consumer: Consumer
) -> None:
    engine = await make_engine(amqp_url=AMQP_URL, amqp_exchange=consumer.exchange)
    (first,) = await submit(engine, make_task(engine, "noop"))
    await wait_for(lambda: len(consumer.messages) >= 3, timeout=15)
    # The broker closes every client connection (the sink's and the consumer's).
    closed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "close_all_connections", "test: the sink must reconnect"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert closed.returncode == 0, closed.stderr
    later = await submit(engine, *(make_task(engine, "noop") for _ in range(10)))

    def all_arrived() -> bool:
        seen = kinds_by_task(consumer.events())
        return all(seen.get(i, [])[-1:] == ["succeeded"] for i in later)

    await wait_for(all_arrived, timeout=60)
    seen = kinds_by_task(consumer.events())
    # At least once: every change arrived; a batch sent again may repeat some.
    for task_id in [first, *later]:
        assert {"submitted", "started", "succeeded"} <= set(seen[task_id])

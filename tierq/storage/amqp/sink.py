"""Every event to a RabbitMQ exchange (aio-pika): a durable topic exchange, persistent
messages with routing key ``<queue>.<event>`` (``default.failed``), publisher confirms, and a
robust connection that reconnects by itself after the broker or the network drops it.

Message: body the event's JSON (``tierq.model.Event``, times in seconds since the Unix
epoch), ``content_type`` application/json, ``type`` the event name, ``message_id`` naming the
change (so a consumer can drop the repeats at-least-once delivery allows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec

from tierq.model import Event
from tierq.storage.base import StoreUnavailable
from tierq.storage.sinks import EventSink, message_id

try:
    import aio_pika
    from aio_pika.exceptions import AMQPError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "the AMQP event sink needs aio-pika: pip install 'tierq[amqp]'", name=exc.name
    ) from exc

_encode = msgspec.json.Encoder().encode
# A publish not confirmed within this long counts as failed (the batch is sent again).
CONFIRM_TIMEOUT_S = 10.0


class AmqpSink(EventSink):
    name = "amqp"

    def __init__(self, url: str, exchange: str) -> None:
        self._url = url
        self._exchange_name = exchange
        self._connection: Any = None
        self._exchange: Any = None

    async def open(self) -> None:
        if self._connection is not None:
            return
        try:
            self._connection = await aio_pika.connect_robust(self._url)
            channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except (AMQPError, OSError) as exc:
            await self.close()
            raise StoreUnavailable(f"amqp: cannot connect: {exc}") from exc

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            await connection.close()

    async def publish_many(self, events: Sequence[Event]) -> None:
        exchange = self._exchange
        if exchange is None:
            await self.open()
            exchange = self._exchange
        messages = [
            (
                aio_pika.Message(
                    _encode(e),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message_id(e),
                    type=e.event,
                ),
                f"{e.queue or 'tierq'}.{e.event}",
            )
            for e in events
        ]
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                # Sent in order on one channel; each publish returns once confirmed.
                await asyncio.gather(*(exchange.publish(m, routing_key=key) for m, key in messages))
        except (AMQPError, OSError, TimeoutError, RuntimeError) as exc:
            raise StoreUnavailable(f"amqp: publish failed: {type(exc).__name__}: {exc}") from exc

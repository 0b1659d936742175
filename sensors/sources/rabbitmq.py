"""RabbitMQ (AMQP 0-9-1): a durable queue, consumed with manual acknowledgements.

The queue is declared durable if it does not exist (and bound to ``exchange``
with ``routing_key`` when given). Messages stay unacknowledged until their events
are in Kafka; a connection that closes first returns them to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from sensors.sources.base import Inbox, Message, Upstream, UpstreamLost

__all__ = ["RabbitUpstream"]


class RabbitUpstream(Upstream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection: Any = None

    async def connect(self) -> None:
        self.inbox = inbox = Inbox()
        connection: AbstractRobustConnection | Any = await aio_pika.connect(self.url, timeout=10)
        self._connection = connection

        def lost(*args: Any) -> None:
            inbox.fail(UpstreamLost(f"the AMQP connection to {self.where} closed: {args[-1]}"))

        connection.close_callbacks.add(lost)
        channel = await connection.channel()
        channel.close_callbacks.add(lost)
        await channel.set_qos(prefetch_count=self.spec.prefetch or 100)
        queue = await channel.declare_queue(self.spec.address, durable=True)
        if self.spec.exchange:
            await queue.bind(self.spec.exchange, self.spec.routing_key or "#")
        await queue.consume(self._pushed, no_ack=False)

    async def _pushed(self, message: AbstractIncomingMessage) -> None:
        self.inbox.put(
            Message(
                body=message.body,
                subject=message.routing_key or self.spec.address,
                headers={k: _text(v) for k, v in (message.headers or {}).items()},
                native_id=message.message_id,
                time=message.timestamp,
                handle=message,
            )
        )

    async def ack(self, messages: list[Message]) -> None:
        if messages:  # deliveries are in order on the channel: one ack covers the batch
            await messages[-1].handle.ack(multiple=True)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

"""NATS: core subjects through a queue group, or JetStream through a durable pull consumer.

Core NATS has no acknowledgements: a message that arrives while no process of
the queue group is connected is gone, as for any core NATS subscriber. JetStream
keeps it: the durable consumer redelivers whatever was not acknowledged within
its ack wait (30 s), or at once to the next process after a disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from sensors.sources.base import Inbox, Message, Upstream, UpstreamLost
from triggers.errors import ConfigurationError

__all__ = ["NatsUpstream"]

_ACK_WAIT = 30.0


class NatsUpstream(Upstream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: Client | None = None
        self._pull: Any = None

    async def connect(self) -> None:
        self.inbox = inbox = Inbox()

        async def lost(*_: Any) -> None:
            inbox.fail(UpstreamLost(f"the NATS connection to {self.where} closed"))

        self._client = await nats.connect(
            self.url,
            allow_reconnect=False,  # the runner reconnects, with backoff, and says so
            connect_timeout=5,
            max_reconnect_attempts=0,
            disconnected_cb=lost,
            closed_cb=lost,
            error_cb=_ignore,
        )
        spec = self.spec
        if spec.stream is None:
            await self._client.subscribe(
                self.spec.address, queue=spec.queue_group or self.group, cb=self._pushed
            )
            return
        js = self._client.jetstream()
        try:
            await js.stream_info(spec.stream)
        except NotFoundError:
            raise ConfigurationError(
                f"the JetStream stream {spec.stream!r} does not exist on {self.where}; create it "
                f"for the subject, e.g. `nats stream add {spec.stream} --subjects "
                f"'{spec.address}'`, or drop 'stream' to read core NATS."
            ) from None
        self._pull = await js.pull_subscribe(
            spec.address,
            durable=spec.durable or self.group,
            stream=spec.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=spec.ack_wait or _ACK_WAIT,
                deliver_policy=DeliverPolicy.ALL if spec.start == "all" else DeliverPolicy.NEW,
            ),
        )

    async def _pushed(self, msg: Msg) -> None:
        self.inbox.put(
            Message(
                body=msg.data,
                subject=msg.subject,
                headers=dict(msg.headers or {}),
                native_id=(msg.headers or {}).get("Nats-Msg-Id"),
            )
        )

    async def receive(self, limit: int, timeout: float) -> list[Message]:
        if self._pull is None:
            return await super().receive(limit, timeout)
        assert self._client is not None
        if self._client.is_closed:
            raise UpstreamLost(f"the NATS connection to {self.where} closed")
        try:
            fetched = await self._pull.fetch(batch=limit, timeout=timeout)
        except NatsTimeout:
            return []
        except TimeoutError:
            return []
        return [self._message(m) for m in fetched]

    def _message(self, msg: Msg) -> Message:
        meta = msg.metadata
        headers = dict(msg.headers or {})
        return Message(
            body=msg.data,
            subject=msg.subject,
            headers=headers,
            native_id=headers.get("Nats-Msg-Id") or f"{meta.stream}:{meta.sequence.stream}",
            time=meta.timestamp,
            handle=msg,
        )

    async def ack(self, messages: list[Message]) -> None:
        if self._pull is None or self._client is None:
            return
        for message in messages:
            await message.handle.ack()
        await self._client.flush(timeout=10)

    async def close(self) -> None:
        client, self._client, self._pull = self._client, None, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):  # closing a connection that died
                await asyncio.wait_for(client.close(), 5)


async def _ignore(_: Exception) -> None:
    """nats-py reports each error here and then closes; the closed callback handles it."""

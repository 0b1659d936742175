"""MQTT through Mosquitto or any 3.1.1 broker: a persistent session, QoS 1 by default.

The session (``clean_session=False``, a fixed client id) keeps what arrives while
the source is away, and the broker resends a QoS 1 message until it is
acknowledged. The acknowledgement (PUBACK) is sent only after the event is in
Kafka: aiomqtt acknowledges on receipt, so manual acknowledgement is switched on in
the paho client underneath (``_client``, the documented way to reach paho's API).
Two connections with one client id take the session from each other, so one
process at a time reads an MQTT source (a lease in the run store decides which).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from sensors.sources.base import Inbox, Message, Upstream, UpstreamLost

__all__ = ["MqttUpstream"]


class MqttUpstream(Upstream):
    exclusive = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        parts = urlsplit(self.url)
        secure = parts.scheme == "mqtts"
        self.inbox = Inbox()
        client = aiomqtt.Client(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if secure else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            identifier=self.spec.client_id or self.group,
            clean_session=False,
            tls_context=ssl.create_default_context() if secure else None,
            timeout=10,
        )
        client._client.manual_ack_set(True)
        await client.__aenter__()
        self._client = client
        await client.subscribe(self.spec.address, qos=1 if self.spec.qos is None else self.spec.qos)
        self._reader = asyncio.create_task(self._read(client, self.inbox))

    async def _read(self, client: aiomqtt.Client, inbox: Inbox) -> None:
        try:
            async for m in client.messages:
                payload = m.payload
                body = (
                    payload
                    if isinstance(payload, bytes | bytearray)
                    else str(payload if payload is not None else "").encode()
                )
                inbox.put(Message(body=bytes(body), subject=str(m.topic), handle=(m.mid, m.qos)))
        except aiomqtt.MqttError as exc:
            inbox.fail(UpstreamLost(f"the MQTT connection to {self.where} was lost: {exc}"))
        except asyncio.CancelledError:
            raise
        else:
            inbox.fail(UpstreamLost(f"the MQTT connection to {self.where} ended"))

    async def ack(self, messages: list[Message]) -> None:
        assert self._client is not None
        for message in messages:
            mid, qos = message.handle
            if qos > 0:
                self._client._client.ack(mid, qos)

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.__aexit__(None, None, None), 5)

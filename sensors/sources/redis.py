"""Redis Streams: a consumer group, one consumer per process, XACK after the event is in Kafka.

An entry is a map of fields. With ``field`` the body is that field's value (JSON
or text), else the whole entry as a JSON object of its fields. A process reads
what it left pending first (after a reconnect), and every ``claim_after`` seconds
(default 60) takes over entries that another consumer received and never
acknowledged: a process that died (never its own, which may be waiting for Kafka).
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from sensors.sources.base import Message, Upstream

__all__ = ["RedisUpstream"]

_CLAIM_AFTER = 60.0


class RedisUpstream(Upstream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: aioredis.Redis | None = None
        self._own_pending = True
        self._next_claim = 0.0

    async def connect(self) -> None:
        self._client = aioredis.from_url(
            self.url, socket_connect_timeout=5, health_check_interval=10
        )
        try:
            await self._client.xgroup_create(
                self.spec.address,
                self.group,
                id="0" if self.spec.start == "all" else "$",
                mkstream=True,
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._own_pending = True  # what this consumer received before a reconnect
        self._next_claim = 0.0

    async def receive(self, limit: int, timeout: float) -> list[Message]:
        client = self._client
        assert client is not None
        stream = self.spec.address
        if self._own_pending:
            found = _entries(
                await client.xreadgroup(self.group, self.instance, {stream: "0"}, count=limit)
            )
            if found:
                return [self._message(i, f) for i, f in found]
            self._own_pending = False
        if time.monotonic() >= self._next_claim:
            claimed = await self._claim(client, limit)
            if claimed:
                return claimed
        entries = await client.xreadgroup(
            self.group,
            self.instance,
            {stream: ">"},
            count=limit,
            block=max(1, int(timeout * 1000)),
        )
        return [self._message(i, f) for i, f in _entries(entries)]

    async def _claim(self, client: aioredis.Redis, limit: int) -> list[Message]:
        """Entries other consumers of the group received and left unacknowledged for
        ``claim_after`` seconds. Never this consumer's own: those wait for Kafka here."""
        idle = int((self.spec.claim_after or _CLAIM_AFTER) * 1000)
        self._next_claim = time.monotonic() + idle / 2000
        pending: Any = await client.xpending_range(
            self.spec.address, self.group, min="-", max="+", count=limit, idle=idle
        )
        theirs = [p["message_id"] for p in pending if _text(p["consumer"]) != self.instance]
        if not theirs:
            return []
        self._next_claim = 0.0  # there may be more
        # XCLAIM checks the idle time again: one acknowledged meanwhile stays where it is.
        claimed: Any = await client.xclaim(
            self.spec.address, self.group, self.instance, idle, theirs
        )
        return [self._message(i, f) for i, f in claimed if f]

    def _message(self, entry: bytes, fields: dict[bytes, bytes]) -> Message:
        ident = entry.decode()
        wanted = self.spec.field.encode() if self.spec.field else None
        if wanted is not None and wanted in fields:
            body = fields[wanted]
        else:
            body = json.dumps(
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
            ).encode()
        millis = int(ident.split("-", 1)[0])
        return Message(
            body=body,
            subject=self.spec.address,
            native_id=f"{self.spec.address}:{ident}",
            time=datetime.fromtimestamp(millis / 1000, UTC),
            handle=entry,
        )

    async def ack(self, messages: list[Message]) -> None:
        if messages and self._client is not None:
            await self._client.xack(self.spec.address, self.group, *(m.handle for m in messages))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a connection that died
                await client.aclose()


def _entries(result: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The (id, fields) entries of an XREADGROUP on one stream; a deleted entry (fields
    None) is left out, since there is nothing to make an event of."""
    if not result:
        return []
    return [(ident, fields) for ident, fields in result[0][1] if fields is not None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""PostgreSQL LISTEN/NOTIFY: each NOTIFY's payload is a message.

NOTIFY has no acknowledgement or replay: a notification sent while nobody
listens is gone, as PostgreSQL documents. Every listener gets every
notification, so one process at a time listens (a lease in the run store decides
which). An idle connection is checked every 5 s, so a server that went away is
noticed and the source reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg

from sensors.sources.base import Inbox, Message, Upstream, UpstreamLost

__all__ = ["PostgresUpstream"]

_CHECK_EVERY = 5.0


class PostgresUpstream(Upstream):
    exclusive = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection: asyncpg.Connection | None = None
        self._checked = 0.0

    async def connect(self) -> None:
        self.inbox = inbox = Inbox()
        url = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        connection = await asyncpg.connect(url, timeout=10)
        self._connection = connection

        def pushed(_: Any, pid: int, channel: str, payload: str) -> None:
            inbox.put(Message(body=payload.encode(), subject=channel, headers={"pid": str(pid)}))

        def lost(_: Any) -> None:
            inbox.fail(UpstreamLost(f"the PostgreSQL connection to {self.where} closed"))

        connection.add_termination_listener(lost)
        await connection.add_listener(self.spec.address, pushed)
        self._checked = time.monotonic()

    async def receive(self, limit: int, timeout: float) -> list[Message]:
        batch = await super().receive(limit, timeout)
        if not batch and time.monotonic() - self._checked > _CHECK_EVERY:
            assert self._connection is not None
            try:
                await self._connection.fetchval("SELECT 1", timeout=5)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                raise UpstreamLost(f"the PostgreSQL server at {self.where} stopped: {exc}") from exc
            self._checked = time.monotonic()
        return batch

    async def ack(self, messages: list[Message]) -> None:
        """NOTIFY has nothing to acknowledge."""

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)
            connection.terminate()

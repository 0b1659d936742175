"""What every bus client offers a source runner: connect, receive a batch, acknowledge it.

A client (an :class:`Upstream`) raises :class:`UpstreamLost` (or whatever its
library raises) when its server goes away; the runner then closes it and
connects again with backoff. Clients of push-style libraries (a callback per
message) put the messages in an :class:`Inbox` and :meth:`Inbox.fail` it when the
connection drops.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from triggers.settings import Settings
from triggers.sources import EventSource, shown_url

__all__ = ["Inbox", "Message", "Upstream", "UpstreamLost"]


class UpstreamLost(Exception):
    """The connection to the bus is gone."""


@dataclass(slots=True)
class Message:
    """One message as received: its bytes and what the bus says about it."""

    body: bytes
    subject: str
    headers: Mapping[str, str] = field(default_factory=dict)
    native_id: str | None = None
    time: datetime | None = None
    key: str | None = None
    handle: Any = None  # what the client needs to acknowledge it


class Upstream(abc.ABC):
    """A connection to one bus for one source."""

    # True where only one process may read the source at a time (a lease decides which).
    exclusive: ClassVar[bool] = False

    def __init__(
        self, spec: EventSource, url: str, instance: str, group: str, settings: Settings
    ) -> None:
        self.spec = spec
        self.url = url  # with the ${...} of the declaration resolved
        self.settings = settings  # of the worker that runs the source
        self.instance = instance  # this process, where the bus names consumers
        self.group = spec.group or group  # the durable consumer, group, queue group, client id
        self.where = shown_url(spec.url)  # for messages: no password
        # Where push-style clients' callbacks put messages; a new one per connection.
        self.inbox = Inbox()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect and subscribe (declaring consumers, groups or queues it needs)."""

    async def receive(self, limit: int, timeout: float) -> list[Message]:
        """Up to ``limit`` messages; wait at most ``timeout`` seconds for the first.
        By default from :attr:`inbox`; clients that pull from their bus override it."""
        return await self.inbox.take(limit, timeout)

    @abc.abstractmethod
    async def ack(self, messages: list[Message]) -> None:
        """Acknowledge ``messages`` (all of one :meth:`receive`, in order)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect without acknowledging anything more. Idempotent."""


class Inbox:
    """Messages pushed by a client's callbacks, taken out in batches."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()

    def put(self, message: Message) -> None:
        self._queue.put_nowait(message)

    def fail(self, why: BaseException) -> None:
        """The connection is gone: the next :meth:`take` raises ``why``."""
        if self._failure is None:
            self._failure = why
        self._failed.set()

    async def take(self, limit: int, timeout: float) -> list[Message]:
        batch: list[Message] = []
        if self._queue.empty() and self._failure is None:
            get = asyncio.ensure_future(self._queue.get())
            failed = asyncio.ensure_future(self._failed.wait())
            try:
                await asyncio.wait({get, failed}, timeout=timeout, return_when="FIRST_COMPLETED")
            finally:
                failed.cancel()
                if not get.done():
                    get.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await get
            if get.done() and not get.cancelled():
                batch.append(get.result())
        while len(batch) < limit and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if not batch and self._failure is not None:
            raise self._failure
        return batch

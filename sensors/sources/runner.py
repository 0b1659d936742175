"""Running one event source: connect, turn messages into events, publish, then acknowledge.

At least once, in this order for each batch: receive up to 100 messages, publish
their events to the events topic (and the messages that make no event to the
dead-letter topic), wait until Kafka acknowledged all of them, and only then
acknowledge the batch upstream. Batches are acknowledged in the order they were
received; up to 8 may wait for Kafka at once. A crash in between makes the bus redeliver the
batch; the events keep their ids, so the engine runs each once.

While the events topic is unavailable the batch stays unacknowledged and publishing
is tried again with backoff (0.5 s doubling to 30 s). When the bus goes away the
source reconnects with the same backoff. The state, counters and last error are
what ``tripwire sources status`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from sensors.faults import crash_point
from sensors.runs.store import RunStore
from sensors.sources.base import Message, Upstream
from sensors.sources.convert import Converter, Filtered, Invalid
from sensors.sources.store import SourceStatus, release_lease, take_lease
from sensors.stages.deadletter import source_letter
from triggers import tracing
from triggers.envelope import encode
from triggers.error_text import exception_text
from triggers.errors import ConfigurationError, StoreError
from triggers.settings import Settings
from triggers.sources import EventSource, resolve_url, shown_url

__all__ = ["SourceRunner", "Stats", "consumer_group"]

log = logging.getLogger(__name__)

_BATCH = 100
_IN_FLIGHT = 8  # batches sent to Kafka and not yet acknowledged by it
_POLL = 0.01  # how long to wait for more messages while batches wait for Kafka
_RECEIVE_WAIT = 1.0
_FIRST_DELAY, _MAX_DELAY = 0.5, 30.0
_CONNECT_TIMEOUT = 30.0
# kind -> (module, class, the client library's package, the extra that installs it)
_CLIENTS = {
    "nats": ("sensors.sources.nats", "NatsUpstream", "nats", "nats-py"),
    "mqtt": ("sensors.sources.mqtt", "MqttUpstream", "aiomqtt", "aiomqtt"),
    "rabbitmq": ("sensors.sources.rabbitmq", "RabbitUpstream", "aio_pika", "aio-pika"),
    "redis": ("sensors.sources.redis", "RedisUpstream", "redis", "redis"),
    "kafka": ("sensors.sources.kafka", "KafkaUpstream", "aiokafka", "aiokafka"),
    "postgres": ("sensors.sources.postgres", "PostgresUpstream", "asyncpg", "asyncpg"),
}


class _Stopped(Exception):
    """The runner was asked to stop while it waited."""


class _LeaseLost(Exception):
    """Another process may hold the source now."""


def consumer_group(project: str, domain: str, source: str) -> str:
    """The default durable consumer, group or client id of a source in a deployment."""
    return f"tripwire-{project}-{domain}-{source}"


@dataclass
class Stats:
    """What a runner reports: its state since when, its counters, its last error."""

    state: str = "starting"
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    messages_in: int = 0
    events_out: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    def enter(self, state: str) -> None:
        if state != self.state:
            self.state, self.since = state, datetime.now(UTC)

    def error(self, text: str) -> None:
        self.last_error, self.last_error_at = text[:2000], datetime.now(UTC)


class SourceRunner:
    """Runs one deployed source in this process until stopped (see the module docs)."""

    def __init__(
        self,
        spec: EventSource,
        revision: int,
        *,
        settings: Settings,
        store: RunStore,
        producer: AIOKafkaProducer,
        instance: str,
    ) -> None:
        self.spec = spec
        self.revision = revision
        self.settings = settings
        self.store = store
        self.producer = producer
        self.instance = instance
        self.stats = Stats()
        self.converter = Converter(spec, settings.max_payload_bytes)
        self._lease_until = 0.0
        self._renew_at = 0.0

    def report(self) -> SourceStatus:
        return SourceStatus(
            source=self.spec.name,
            instance=self.instance,
            revision=self.revision,
            updated_at=datetime.now(UTC),
            **vars(self.stats),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Read the source until ``stop`` is set, reconnecting with backoff."""
        try:
            upstream = self._upstream()
        except ConfigurationError as exc:
            self.stats.error(str(exc))
            self.stats.enter("failed")
            log.error("source %s cannot run: %s", self.spec.name, exc)
            return
        delay = _FIRST_DELAY
        try:
            while not stop.is_set():
                if upstream.exclusive and not await self._lease():
                    self.stats.enter("standby")
                    await _wait(stop, self.settings.source_lease / 3)
                    continue
                connected = False
                try:
                    self.stats.enter("connecting")
                    await asyncio.wait_for(upstream.connect(), _CONNECT_TIMEOUT)
                    connected = True
                    self.stats.enter("connected")
                    log.info("source %s connected to %s", self.spec.name, shown_url(self.spec.url))
                    await self._consume(upstream, stop)
                except (_Stopped, asyncio.CancelledError):
                    raise
                except _LeaseLost as exc:
                    self.stats.error(str(exc))
                    log.warning("source %s: %s", self.spec.name, exc)
                except Exception as exc:
                    text = _describe(exc)
                    self.stats.error(text)
                    self.stats.enter("reconnecting")
                    log.warning(
                        "source %s: %s [reconnecting in %.1fs]", self.spec.name, text, delay
                    )
                finally:
                    await upstream.close()
                if connected:
                    delay = _FIRST_DELAY
                await _wait(stop, delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, _MAX_DELAY)
        except _Stopped:
            pass
        finally:
            self.stats.enter("stopped")
            if upstream.exclusive and self._lease_until:
                with contextlib.suppress(StoreError):
                    await release_lease(
                        self.store,
                        self.settings.project,
                        self.settings.domain,
                        self.spec.name,
                        self.instance,
                    )

    def _upstream(self) -> Upstream:
        module, name, package, dist = _CLIENTS[self.spec.kind]
        try:
            cls = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] != package:
                raise
            raise ConfigurationError(
                f"a {self.spec.kind} source needs the {dist} package, which is not installed "
                f"where this worker runs: pip install 'tripwire[{self.spec.kind}]'."
            ) from None
        url = resolve_url(self.spec.url)
        group = consumer_group(self.settings.project, self.settings.domain, self.spec.name)
        upstream: Upstream = cls(self.spec, url, self.instance, group, self.settings)
        return upstream

    async def _lease(self) -> bool:
        """Take or renew this process's lease on the source; False if another holds it."""
        ttl = self.settings.source_lease
        try:
            held = await take_lease(
                self.store,
                self.settings.project,
                self.settings.domain,
                self.spec.name,
                self.instance,
                ttl,
            )
        except StoreError as exc:
            self.stats.error(f"cannot take the lease: {exc}")
            held = False
        now = time.monotonic()
        if held:
            self._lease_until, self._renew_at = now + ttl, now + ttl / 3
        return held

    async def _consume(self, upstream: Upstream, stop: asyncio.Event) -> None:
        """Receive, convert and send batch after batch; acknowledge each in order once Kafka
        has all of its records. Up to ``_IN_FLIGHT`` batches wait for Kafka at a time, and
        acknowledgements go out from a task of their own, coalesced (one commit or XACK
        for all that are due), so neither Kafka's latency nor the bus's holds up reading."""
        in_flight: deque[_Batch] = deque()
        due: asyncio.Queue[list[Message]] = asyncio.Queue()
        acker = asyncio.create_task(self._acknowledge(upstream, due))
        try:
            while not stop.is_set():
                if acker.done():
                    acker.result()  # the bus refused an acknowledgement: reconnect
                renew = upstream.exclusive and time.monotonic() >= self._renew_at
                if renew and not await self._lease() and time.monotonic() >= self._lease_until - 1:
                    raise _LeaseLost("lost the lease on the source; another process may read it")
                wait = _POLL if in_flight else _RECEIVE_WAIT
                batch = await upstream.receive(_BATCH, wait)
                if batch:
                    in_flight.append(await self._send(batch))
                while in_flight and (
                    not batch or in_flight[0].sent.done() or len(in_flight) >= _IN_FLIGHT
                ):
                    settled = await self._settled(in_flight.popleft(), stop)
                    self.stats.events_out += settled.events
                    due.put_nowait(settled.messages)
        finally:
            for pending in in_flight:  # not acknowledged: the bus delivers them again
                pending.sent.cancel()
            await asyncio.gather(*(p.sent for p in in_flight), return_exceptions=True)
            await _drain(acker, due)

    async def _acknowledge(self, upstream: Upstream, due: asyncio.Queue[list[Message]]) -> None:
        """Acknowledge upstream, in order, what Kafka has; all that is due at once."""
        while True:
            taken = [await due.get()]
            while not due.empty():
                taken.append(due.get_nowait())
            crash_point("source.published")
            await upstream.ack([m for batch in taken for m in batch])
            for _ in taken:
                due.task_done()

    async def _send(self, batch: list[Message]) -> _Batch:
        """Convert ``batch`` and hand its records to the producer, without waiting."""
        s = self.settings
        records: list[_Record] = []
        events = 0
        self.stats.messages_in += len(batch)
        trace = tracing.current()  # for the events whose messages carry no trace context
        for message in batch:
            try:
                record = encode(
                    tracing.stamp(self.converter.convert(message), trace, s.topic_events)
                )
            except Filtered as why:
                self.stats.filtered += 1
                log.debug("source %s filtered a message out: %s", self.spec.name, why)
                continue
            except Invalid as why:
                self.stats.dead_lettered += 1
                self.stats.error(f"a message on {message.subject} made no event: {why}")
                key, value, headers = source_letter(
                    self.spec.name, message.subject, message.body, str(why), s.max_payload_bytes
                )
                records.append((s.topic_dead_letter, key, value, headers))
                continue
            records.append((s.topic_events, record.key, record.value, record.headers))
            events += 1
        try:
            sent = await self._produce(records)
        except (KafkaError, OSError) as exc:
            sent = asyncio.get_running_loop().create_future()
            sent.set_exception(exc)
        return _Batch(batch, records, events, sent)

    async def _produce(self, records: list[_Record]) -> asyncio.Future[Any]:
        """Hand ``records`` to the producer; the future resolves once Kafka has them all."""
        acks = [
            await self.producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        return asyncio.ensure_future(asyncio.gather(*acks))

    async def _settled(self, batch: _Batch, stop: asyncio.Event) -> _Batch:
        """``batch``, once Kafka has all of its records (sent again while Kafka fails)."""
        try:
            await batch.sent
        except (KafkaError, OSError) as exc:
            self._publish_failed(exc, len(batch.records), _FIRST_DELAY)
            await _wait(stop, _FIRST_DELAY)
            await self._publish(batch.records, stop)
        return batch

    async def _publish(self, records: list[_Record], stop: asyncio.Event) -> None:
        """Send ``records`` and wait for Kafka's acknowledgement of each; while Kafka fails,
        try again with backoff (a record sent twice keeps its event id)."""
        delay = _FIRST_DELAY
        while records:
            try:
                await (await self._produce(records))
                return
            except (KafkaError, OSError) as exc:
                delay = min(delay * 2, _MAX_DELAY)
                self._publish_failed(exc, len(records), delay)
                await _wait(stop, delay)

    def _publish_failed(self, exc: BaseException, count: int, delay: float) -> None:
        self.stats.error(f"cannot publish to Kafka ({exc!r}); {count} records wait, unacknowledged")
        log.warning(
            "source %s: publishing failed, trying again in %.1fs: %r", self.spec.name, delay, exc
        )


_Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass
class _Batch:
    """Messages received together, their records, and Kafka's answer for all of them."""

    messages: list[Message]
    records: list[_Record]
    events: int
    sent: asyncio.Future[Any]


async def _drain(acker: asyncio.Task[None], due: asyncio.Queue[list[Message]]) -> None:
    """Let the acknowledger send what is due (for up to 5 s), then stop it."""
    sent = asyncio.ensure_future(due.join())
    await asyncio.wait([sent, acker], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    sent.cancel()
    acker.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await acker


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``; raise _Stopped if ``stop`` is set first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    if stop.is_set():
        raise _Stopped


def _describe(exc: BaseException) -> str:
    """An error as the status shows it: the library's words and the kind of failure."""
    if isinstance(exc, ConfigurationError):
        return str(exc)
    return exception_text(exc)

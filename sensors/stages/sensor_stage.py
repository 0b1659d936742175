"""The sensor stage: events in; run requests, offers and counts out.

Reads ``tripwire.events``, and ``tripwire.run-events`` for ``trigger_on_finish``,
in batches and lets the :class:`~sensors.core.router.Router` decide the whole
batch. Single-event sensors fire here and their run requests go to
``tripwire.run-requests`` (keyed by run name, so every request for one run
lands on one launcher). Events for multi-event sensors go on, packed per
partition, to the offers topic, partitioned by sensor and correlation key, so
that each key's state lives on exactly one worker (:mod:`sensors.stages.correlation_stage`).
Offsets are committed only after all of that, by
:func:`sensors.stages.kafka.consume_batches`.

It also writes *marks* into every offers partition: for each of its input
partitions, the time up to which every event has been routed and its output has
landed. The correlator decides time-driven fires (absences, debounce) and expiry
by the oldest mark, never by its own clock (:mod:`sensors.core.changelog`). A
partition that is caught up is marked with the time of its last fetch; one that is
behind, with the timestamp of the last record handled; both minus
``absence_grace``, the lateness an event may have (a producer's clock, its linger).
A stage that is blocked (its output cannot land: the broker or the run store is
down) writes no marks, so the correlator waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from sensors.core.router import Router
from sensors.core.types import Arrival, Decisions
from sensors.core.wire import encode_keyed, encode_marks
from sensors.runs.models import FilterCount
from sensors.stages import spans
from sensors.stages.deadletter import DeadRecord, dead_letter
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import Batch
from sensors.stages.reporter import StatusReporter, count_filtered
from triggers import tracing
from triggers.envelope import decode
from triggers.errors import EventDecodeError
from triggers.spec import RUN_EVENT_TYPE, finished_event

__all__ = ["SensorStage", "SensorStats"]

log = logging.getLogger(__name__)

_MARK_EVERY = 0.5  # seconds between marks, at most


@dataclass
class SensorStats:
    """Counters since start, for logs, metrics, `sensors status` and benchmarks."""

    events: int = 0
    undecodable: int = 0
    fires: int = 0
    failures: int = 0
    offers: int = 0
    ignored_before_deploy: int = 0
    filtered: dict[tuple[str, str], FilterCount] = field(default_factory=dict)


class SensorStage:
    """Routes batches of events with a :class:`Router` and emits the results."""

    def __init__(
        self,
        router: Router,
        emitter: Emitter,
        offer_partitions: int,
        reporter: StatusReporter | None = None,
    ) -> None:
        self.router = router
        self._emitter = emitter
        self._partitions = offer_partitions
        self._max_bytes = emitter.settings.max_payload_bytes
        self._reporter = reporter
        self.stats = SensorStats()
        self._grace_ms = int(emitter.settings.absence_grace * 1000)
        self._consumer: AIOKafkaConsumer | None = None
        self._landing: asyncio.Future[bool] | None = None  # the last batch's output
        self._marking: asyncio.Future[bool] | None = None  # the last marks
        self._marked_at = 0.0
        self._stamps: dict[TopicPartition, int] = {}  # last handled record's timestamp, ms

    def attach(self, consumer: AIOKafkaConsumer) -> None:
        """The consumer of the stage's input topics, whose progress the marks report."""
        self._consumer = consumer

    async def tick(self) -> None:
        if self._reporter is not None:
            await self._reporter.flush()
        await self.mark()

    async def mark(self, *, force: bool = False) -> asyncio.Future[bool] | None:
        """Write marks into every offers partition, if the last ones landed, what was
        handled has landed, and (unless ``force``) it has been a while; return the future
        of their landing, or None if it wrote none."""
        consumer = self._consumer
        if consumer is None or (not force and time.monotonic() - self._marked_at < _MARK_EVERY):
            return None
        if any(f is not None and not f.done() for f in (self._landing, self._marking)):
            return None  # a mark must follow what it reports
        marks = await self._marks(consumer)
        self._marked_at = time.monotonic()
        if not marks:
            return None
        record = encode_marks(marks)
        offers = [(p, record) for p in range(self._partitions)]
        self._marking = await self._emitter.submit(Decisions(), offers=offers)
        return self._marking

    async def _marks(self, consumer: AIOKafkaConsumer) -> dict[str, int]:
        marks: dict[str, int] = {}
        for tp in consumer.assignment():
            with contextlib.suppress(IllegalStateError, AssertionError):  # revoked meanwhile
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue  # not fetched yet
                if await consumer.position(tp) >= highwater:
                    at = consumer.last_poll_timestamp(tp)  # caught up as of that fetch
                else:
                    at = self._stamps.get(tp)
                if at is not None:
                    marks[f"{tp.topic}:{tp.partition}"] = at - self._grace_ms
        return marks

    async def handle(self, batch: Batch) -> asyncio.Future[bool]:
        """Route a batch and hand its output to the producer; return the future of its
        landing, so that the next batch is routed while this one's output is in flight."""
        arrivals: list[Arrival] = []
        dead: list[DeadRecord] = []
        stamp, arrived_at = None, datetime.min
        traced = tracing.spans
        started = spans.now() if traced else 0
        for tp, records in batch.items():
            for record in records:
                try:
                    if record.value is not None and len(record.value) > self._max_bytes:
                        raise EventDecodeError(
                            f"payload is {len(record.value)} bytes, over the limit of "
                            f"{self._max_bytes} (TRIPWIRE_MAX_PAYLOAD_BYTES); publish a "
                            "reference to the data instead, or raise the limit on every worker"
                        )
                    envelope = decode(record.value, record.headers)
                except EventDecodeError as exc:
                    # Not ours to fix and never going to decode: set it aside with the
                    # reason, so one bad producer cannot stop every sensor behind it.
                    self.stats.undecodable += 1
                    log.warning(
                        "dead-lettered record %s[%d]@%d: %s",
                        tp.topic,
                        tp.partition,
                        record.offset,
                        exc,
                    )
                    dead.append(dead_letter(record, tp.topic, str(exc), self._max_bytes))
                    continue
                if envelope.name == RUN_EVENT_TYPE:
                    # A run lifecycle event reaches only the sensors of its flow's finish.
                    flow = envelope.payload.get("flow")
                    envelope = msgspec.structs.replace(envelope, name=finished_event(str(flow)))
                if record.timestamp != stamp:  # a produced batch shares one, mostly
                    stamp = record.timestamp
                    arrived_at = datetime.fromtimestamp(stamp / 1000, UTC)
                arrivals.append(Arrival(envelope, arrived_at))
            if records:
                self._stamps[tp] = records[-1].timestamp
        if traced:
            arrivals = spans.routed(arrivals, self._emitter.settings.topic_events, started)
        routed = self.router.route(arrivals)
        if traced and routed.fires:
            routed.fires[:] = spans.fired(routed.fires)
        offers = encode_keyed(routed.offers, self._partitions, self._max_bytes)
        landed = self._landing = await self._emitter.submit(routed, offers=offers, dead=dead)
        stats = self.stats
        stats.events += len(arrivals)
        stats.fires += len(routed.fires)
        stats.failures += len(routed.failures)
        stats.offers += len(routed.offers)
        stats.ignored_before_deploy += routed.ignored_before_deploy
        reporter = self._reporter
        if reporter is not None and not reporter.enabled:
            reporter = None
        if routed.rejections or reporter is not None:
            now = datetime.now(UTC)
            if routed.rejections:
                count_filtered(stats.filtered, routed.rejections, now)
            if reporter is not None:
                reporter.filtered(routed.rejections, now)
                reporter.routed(arrivals, routed, self.router, now)  # the sensor page, the graph
        return landed

"""The sensor stage: events in; run requests, offers and counts out.

Reads ``tripwire.events``, and ``tripwire.run-events`` for ``trigger_on_finish``,
in batches and lets the :class:`~sensors.routing.Router` decide the whole
batch. Single-event sensors fire here and their run requests go to
``tripwire.run-requests`` (keyed by run name, so every request for one run
lands on one launcher). Events for multi-event sensors go on, packed per
partition, to the offers topic, partitioned by sensor and correlation key, so
that each key's state lives on exactly one worker (:mod:`sensors.state`).
Offsets are committed only after all of that, by
:func:`sensors.kafka.consume_batches`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from sensors.deadletter import dead_letter
from sensors.decisions import Arrival, Decisions, Fire
from sensors.kafka import Batch, send_records
from sensors.records import encode_keyed, key_partition
from sensors.reporting import StatusReporter, count_filtered
from sensors.routing import Router
from sensors.runs.models import FilterCount, TriggerFailure
from sensors.runs.store import RunStore
from triggers.envelope import decode
from triggers.errors import EventDecodeError
from triggers.settings import Settings
from triggers.spec import RUN_EVENT_TYPE, finished_event

__all__ = ["Emitter", "SensorStage", "SensorStats", "run_request"]

log = logging.getLogger(__name__)

_OUTPUT_RETRY = 1.0

DeadRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
"""A dead letter as it is sent: key, value, headers."""


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


def run_request(fire: Fire) -> bytes:
    """The run request a fire becomes, as the JSON of a ``NewRun``: everything the
    launcher needs, nothing to look up.

    Encoded by msgspec rather than through the pydantic model (a third of the
    per-fire cost), after the sensor's fields, which are encoded once: every field
    comes from a deployed sensor or was coerced already, and the launcher
    validates what it reads as a ``NewRun``.
    """
    fields = {"name": fire.run_name, "parameters": fire.parameters, "events": fire.events}
    if fire.info is not None:
        fields["trigger_info"] = fire.info
    tail = _encode(fields)
    return b"%s,%s" % (fire.sensor.request_head, tail[1:])


_encode = msgspec.json.Encoder().encode


class Emitter:
    """Sends a batch's output and records trigger failures, retrying until all went out."""

    def __init__(self, settings: Settings, store: RunStore, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self._store = store
        self.producer = producer
        self._partitions: int | None = None
        self._changes_landing: asyncio.Future[bool] | None = None

    async def submit(
        self,
        decisions: Decisions,
        *,
        offers: Sequence[tuple[int, bytes]] = (),
        changes: Sequence[tuple[int, bytes]] = (),
        dead: Sequence[DeadRecord] = (),
    ) -> asyncio.Future[bool]:
        """Hand a batch's output to the producer: the run requests of ``decisions``,
        plus packed ``offers`` and state ``changes`` as (partition, record).

        Returns without waiting for the output to land; the returned future completes
        once every record is acknowledged and the failures are recorded, sending again
        after each error until then. The caller commits its batch only after that.

        State changes land in the order they were submitted, because a replay applies
        them in log order: when an earlier batch's changes had to be sent again after
        this batch's went out, this batch's are sent again after them. Run requests
        and offers may land in any order. ``dead`` records go to the dead-letter topic.
        """
        try:
            acks: list[asyncio.Future[Any]] | None = await self._send(
                decisions.fires, offers, changes, dead
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sending sensor decisions failed; retrying")
            acks = None
        previous = self._changes_landing if changes else None
        landing = asyncio.ensure_future(
            self._land(acks, decisions, offers, changes, dead, previous)
        )
        if changes:
            self._changes_landing = landing
        return landing

    async def _land(
        self,
        acks: list[asyncio.Future[Any]] | None,
        decisions: Decisions,
        offers: Sequence[tuple[int, bytes]],
        changes: Sequence[tuple[int, bytes]],
        dead: Sequence[DeadRecord],
        previous: asyncio.Future[bool] | None,
    ) -> bool:
        """Wait until the output landed, sending it again as needed; return whether the
        changes were sent more than once (so may have landed after later ones)."""
        resent = False
        while True:
            try:
                if acks is None:
                    await asyncio.sleep(_OUTPUT_RETRY)
                    acks = await self._send(decisions.fires, offers, changes, dead)
                    resent = True
                for result in await asyncio.gather(*acks, return_exceptions=True):
                    if isinstance(result, BaseException):
                        raise result
                if previous is not None and await previous:
                    previous = None
                    acks = await self._send([], (), changes)
                    resent = True
                    continue
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("emitting sensor decisions failed; retrying")
                acks = None
        for fire in decisions.fires:
            log.info("sensor %s fired: run %s", fire.sensor.id, fire.run_name)
        for failure in decisions.failures:
            log.warning("sensor %s: no run: %s", failure.sensor.id, failure.reason)
            while True:
                try:
                    await self._store.record_trigger_failure(
                        TriggerFailure(
                            sensor_id=failure.sensor.id,
                            event_name=failure.event_name,
                            event_id=failure.event_id,
                            reason=failure.reason,
                            created_at=datetime.now(UTC),
                        )
                    )
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("recording a trigger failure failed; retrying")
                    await asyncio.sleep(_OUTPUT_RETRY)
        return resent

    async def _send(
        self,
        fires: list[Fire],
        offers: Sequence[tuple[int, bytes]],
        changes: Sequence[tuple[int, bytes]],
        dead: Sequence[DeadRecord] = (),
    ) -> list[asyncio.Future[Any]]:
        """Hand every record to the producer; return the futures of their acknowledgements."""
        s = self.settings
        acks: list[asyncio.Future[Any]] = []
        if fires:
            if self._partitions is None:
                self._partitions = len(await self.producer.partitions_for(s.topic_run_requests))
            requests = []
            for fire in fires:
                key = fire.run_name.encode()
                value = run_request(fire)
                requests.append((key_partition(key, self._partitions), key, value))
            acks += await send_records(self.producer, s.topic_run_requests, requests)
        if offers:
            acks += await send_records(
                self.producer, s.topic_sensor_offers, ((p, None, v) for p, v in offers)
            )
        if changes:
            acks += await send_records(
                self.producer, s.topic_sensor_state, ((p, b"p%d" % p, v) for p, v in changes)
            )
        for record in dead:  # rare: one send each
            acks.append(
                await self.producer.send(
                    s.topic_dead_letter, record[1], key=record[0], headers=record[2]
                )
            )
        return acks


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

    async def tick(self) -> None:
        if self._reporter is not None:
            await self._reporter.flush()

    async def handle(self, batch: Batch) -> asyncio.Future[bool]:
        """Route a batch and hand its output to the producer; return the future of its
        landing, so that the next batch is routed while this one's output is in flight."""
        arrivals: list[Arrival] = []
        dead: list[DeadRecord] = []
        stamp, arrived_at = None, datetime.min
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
        routed = self.router.route(arrivals)
        offers = encode_keyed(routed.offers, self._partitions, self._max_bytes)
        landed = await self._emitter.submit(routed, offers=offers, dead=dead)
        stats = self.stats
        stats.events += len(arrivals)
        stats.fires += len(routed.fires)
        stats.failures += len(routed.failures)
        stats.offers += len(routed.offers)
        stats.ignored_before_deploy += routed.ignored_before_deploy
        if routed.rejections:
            now = datetime.now(UTC)
            count_filtered(stats.filtered, routed.rejections, now)
            if self._reporter is not None:
                self._reporter.filtered(routed.rejections, now)
        return landed

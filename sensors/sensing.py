"""The sensor stage: events in; run requests, offers and counts out.

Reads ``tripwire.events`` in batches and lets the :class:`~sensors.correlate.Router`
decide the whole batch. Single-event sensors fire here and their run requests
go to ``tripwire.run-requests`` (keyed by run name, so every request for one
run lands on one launcher). Events for multi-event sensors go on, packed per
partition, to the offers topic, partitioned by sensor and correlation key, so
that each key's state lives on exactly one worker (:mod:`sensors.state`).
Offsets are committed only after all of that, by
:func:`sensors.kafka.consume_batches`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from sensors.correlate import Arrival, Decisions, Fire, Offer, Rejection, Router
from sensors.kafka import Batch
from sensors.reporting import StatusReporter
from sensors.runs.models import NewRun, TriggerFailure
from sensors.runs.store import RunStore
from triggers.envelope import Envelope, decode
from triggers.errors import EventDecodeError
from triggers.settings import Settings

__all__ = ["Emitter", "SensorStage", "SensorStats", "pack_offers", "partition_of", "run_request"]

log = logging.getLogger(__name__)

_OUTPUT_RETRY = 1.0


@dataclass
class FilterCount:
    count: int = 0
    last_reason: str = ""
    last_event_id: str = ""
    last_at: datetime | None = None


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

    def count_rejections(self, rejections: Iterable[Rejection]) -> None:
        now = datetime.now(UTC)
        for r in rejections:
            entry = self.filtered.setdefault((r.sensor_id, r.dep), FilterCount())
            entry.count += 1
            entry.last_reason, entry.last_event_id, entry.last_at = r.reason, r.event_id, now


def run_request(fire: Fire) -> NewRun:
    """The run request a fire becomes: everything the launcher needs, nothing to look up."""
    sensor = fire.sensor
    return NewRun(
        project=sensor.project,
        domain=sensor.domain,
        name=fire.run_name,
        flow=sensor.flow.name,
        sensor_id=sensor.id,
        trigger=sensor.trigger.name,
        target=sensor.flow.target,
        entrypoint=sensor.flow.entrypoint.model_dump(),
        parameters=fire.parameters,
        events=list(fire.events),
    )


def partition_of(sensor_id: str, key: str, partitions: int) -> int:
    """The offers (and state changelog) partition of a sensor's correlation key.

    crc32, not hash(): every worker process must agree.
    """
    return zlib.crc32(f"{sensor_id}\x1f{key}".encode()) % partitions


def pack_offers(offers: Iterable[Offer], partitions: int) -> dict[int, bytes]:
    """Offers grouped by partition, one record each: one produce per partition per batch."""
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for offer in offers:
        grouped[partition_of(offer.sensor_id, offer.key, partitions)].append(
            {
                "s": offer.sensor_id,
                "d": offer.dep,
                "k": offer.key,
                "e": offer.arrival.envelope.to_dict(),
                "a": offer.arrival.arrived_at.timestamp(),
            }
        )
    return {p: json.dumps(items, separators=(",", ":")).encode() for p, items in grouped.items()}


def unpack_offers(value: bytes) -> list[Offer]:
    offers = []
    for item in json.loads(value):
        event = item["e"]
        raw_time = event.get("time")
        envelope = Envelope(
            name=event["name"],
            id=event["id"],
            source=event.get("source", ""),
            time=datetime.fromisoformat(raw_time) if raw_time else None,
            payload=event.get("payload") or {},
        )
        arrival = Arrival(envelope, datetime.fromtimestamp(item["a"], UTC))
        offers.append(Offer(item["s"], item["d"], item["k"], arrival))
    return offers


class Emitter:
    """Sends run requests and records trigger failures, retrying until both succeed."""

    def __init__(self, settings: Settings, store: RunStore, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._store = store
        self.producer = producer

    async def emit(self, decisions: Decisions, *, extra: dict[int, bytes] | None = None) -> None:
        """Send the decisions (and ``extra`` records, by partition, to the offers topic)."""
        while True:
            try:
                await self._send(decisions.fires, extra or {})
                for failure in decisions.failures:
                    await self._store.record_trigger_failure(
                        TriggerFailure(
                            sensor_id=failure.sensor.id,
                            event_name=failure.event_name,
                            event_id=failure.event_id,
                            reason=failure.reason,
                            created_at=datetime.now(UTC),
                        )
                    )
                    log.warning("sensor %s: no run: %s", failure.sensor.id, failure.reason)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("emitting sensor decisions failed; retrying")
                await asyncio.sleep(_OUTPUT_RETRY)

    async def _send(self, fires: list[Fire], offers: dict[int, bytes]) -> None:
        topic = self._settings.topic_run_requests
        pending = [
            await self.producer.send(
                topic, run_request(fire).model_dump_json().encode(), key=fire.run_name.encode()
            )
            for fire in fires
        ]
        pending += [
            await self.producer.send(self._settings.topic_sensor_offers, value, partition=p)
            for p, value in offers.items()
        ]
        await asyncio.gather(*pending)
        for fire in fires:
            log.info("sensor %s fired: run %s", fire.sensor.id, fire.run_name)


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
        self._reporter = reporter
        self.stats = SensorStats()

    async def tick(self) -> None:
        if self._reporter is not None:
            await self._reporter.flush()

    async def handle(self, batch: Batch) -> None:
        arrivals: list[Arrival] = []
        for tp, records in batch.items():
            for record in records:
                try:
                    envelope = decode(record.value, record.headers)
                except EventDecodeError as exc:
                    # Not ours to fix and never going to decode: skip it, loudly, so one
                    # bad producer cannot stop every sensor behind it.
                    self.stats.undecodable += 1
                    log.warning(
                        "skipped record %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc
                    )
                    continue
                arrivals.append(
                    Arrival(envelope, datetime.fromtimestamp(record.timestamp / 1000, UTC))
                )
        routed = self.router.route(arrivals)
        await self._emitter.emit(routed, extra=pack_offers(routed.offers, self._partitions))
        stats = self.stats
        stats.events += len(arrivals)
        stats.fires += len(routed.fires)
        stats.failures += len(routed.failures)
        stats.offers += len(routed.offers)
        stats.ignored_before_deploy += routed.ignored_before_deploy
        if routed.rejections:
            stats.count_rejections(routed.rejections)
            if self._reporter is not None:
                self._reporter.filtered(routed.rejections, datetime.now(UTC))

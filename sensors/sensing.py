"""The sensor stage: events in, run requests out.

Reads ``tripwire.events`` in batches, decodes them, lets the pure correlator
decide the whole batch, then sends one run request per fire to
``tripwire.run-requests`` (keyed by run name, so every request for one run
lands on one launcher) and records trigger failures. Offsets are committed
only after that, by :func:`sensors.kafka.consume_batches`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from sensors.correlate import Arrival, Correlator, Decisions, Fire
from sensors.kafka import Batch
from sensors.runs.models import NewRun, TriggerFailure
from sensors.runs.store import RunStore
from triggers.envelope import decode
from triggers.errors import EventDecodeError
from triggers.settings import Settings

__all__ = ["SensorStage", "SensorStats", "run_request"]

log = logging.getLogger(__name__)

_EXPIRE_EVERY = 1.0  # seconds between sweeps of expired correlation state
_OUTPUT_RETRY = 1.0


@dataclass
class SensorStats:
    """Counters since start, for logs, metrics and benchmarks."""

    events: int = 0
    undecodable: int = 0
    fires: int = 0
    failures: int = 0
    ignored_before_deploy: int = 0


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


class SensorStage:
    """Decides batches of events with a :class:`Correlator` and emits the results."""

    def __init__(
        self,
        settings: Settings,
        correlator: Correlator,
        store: RunStore,
        producer: AIOKafkaProducer,
    ) -> None:
        self._settings = settings
        self.correlator = correlator
        self._store = store
        self._producer = producer
        self._last_expiry = 0.0
        self.stats = SensorStats()

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
        self.stats.events += len(arrivals)
        # Deciding mutates correlation state, so it happens once per batch; only the
        # output below is retried if the broker or the store fails.
        decisions = self.correlator.process(arrivals)
        self.stats.ignored_before_deploy += decisions.ignored_before_deploy
        await self._emit(decisions)
        now = time.monotonic()
        if now - self._last_expiry >= _EXPIRE_EVERY:
            self._last_expiry = now
            self.correlator.expire(datetime.now(UTC))

    async def _emit(self, decisions: Decisions) -> None:
        while True:
            try:
                await self._send_requests(decisions.fires)
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
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sensor stage: emitting decisions failed; retrying")
                await asyncio.sleep(_OUTPUT_RETRY)
        self.stats.fires += len(decisions.fires)
        self.stats.failures += len(decisions.failures)

    async def _send_requests(self, fires: list[Fire]) -> None:
        if not fires:
            return
        topic = self._settings.topic_run_requests
        pending = [
            await self._producer.send(
                topic, run_request(fire).model_dump_json().encode(), key=fire.run_name.encode()
            )
            for fire in fires
        ]
        await asyncio.gather(*pending)
        for fire in fires:
            log.info("sensor %s fired: run %s", fire.sensor.id, fire.run_name)

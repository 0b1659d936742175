"""The emitter the stages share: a batch's run requests, offers, state changes and dead
letters go out together, and the batch counts as done only once Kafka has all of them.

Stages submit a batch and commit its offsets only when the future :meth:`Emitter.submit`
returns resolves, so nothing is committed before it has landed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from sensors.core.types import Decisions, Fire
from sensors.core.wire import key_partition, run_request
from sensors.runs.models import TriggerFailure
from sensors.runs.sensor_records import record_trigger_failure
from sensors.runs.store import RunStore
from sensors.stages.deadletter import DeadRecord
from sensors.stages.kafka import send_records
from triggers.settings import Settings

__all__ = ["Emitter"]

log = logging.getLogger(__name__)

_OUTPUT_RETRY = 1.0


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
                    await record_trigger_failure(
                        self._store,
                        TriggerFailure(
                            sensor_id=failure.sensor.id,
                            event_name=failure.event_name,
                            event_id=failure.event_id,
                            reason=failure.reason,
                            created_at=datetime.now(UTC),
                        ),
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

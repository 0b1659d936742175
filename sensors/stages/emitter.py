"""The emitter the stages share: a batch's run requests, offers, state changes and dead
letters go out together, and the batch counts as done only once Kafka has all of them.

Stages submit a batch and commit its offsets only when the future :meth:`Emitter.submit`
returns resolves, so nothing is committed before it has landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from sensors.core.types import Decisions, Failure, Fire
from sensors.core.wire import key_partition, run_request
from sensors.faults import crash_point
from sensors.runs.models import TriggerFailure, UnmatchedCount
from sensors.runs.outages import log_failure
from sensors.runs.sensor_records import record_trigger_failure
from sensors.runs.store import RunStore
from sensors.runs.unmatched import add_unmatched_counts, kept_defaults
from sensors.stages.deadletter import DeadRecord
from sensors.stages.kafka import Superseded, send_records
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
        owner: Callable[[], bool] | None = None,
        on_changes: Callable[[dict[int, int]], None] | None = None,
    ) -> asyncio.Future[bool]:
        """Hand a batch's output to the producer: the run requests of ``decisions``,
        plus packed ``offers`` and state ``changes`` as (partition, record).

        Returns without waiting for the output to land; the returned future completes
        once every record is acknowledged and the failures are recorded, sending again
        after each error until then. The caller commits its batch only after that.

        State changes are sent only once the run requests and failures of their batch
        landed, so a durable changelog record implies its batch's fires are; and after
        the changes of earlier batches landed, so they land in order. Run requests and
        offers may land in any order. ``dead`` records go to the dead-letter topic.

        ``owner`` says whether the batch's partitions are still the caller's. Once they
        are not, what has not landed is abandoned (the new owner decides it again) and
        the future raises :class:`~sensors.stages.kafka.Superseded`.

        ``on_changes`` is called once the state changes landed, before the future
        completes, with the offset after them on each of their changelog partitions: at
        most the offset after the last of them, and past every record before the first.
        """
        acks = await self._sending(decisions.fires, offers, (), dead)
        previous = self._changes_landing if changes else None
        landing = asyncio.ensure_future(
            self._land(acks, decisions, offers, changes, dead, previous, owner, on_changes)
        )
        if changes:
            self._changes_landing = landing
        return landing

    async def changes_landed(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until the state changes submitted so far landed
        or were abandoned."""
        landing = self._changes_landing
        if landing is not None:
            with contextlib.suppress(Exception):  # abandoned, or still in flight: the caller checks
                await asyncio.wait_for(asyncio.shield(landing), timeout)

    async def _land(
        self,
        acks: list[asyncio.Future[Any]] | None,
        decisions: Decisions,
        offers: Sequence[tuple[int, bytes]],
        changes: Sequence[tuple[int, bytes]],
        dead: Sequence[DeadRecord],
        previous: asyncio.Future[bool] | None,
        owner: Callable[[], bool] | None,
        on_changes: Callable[[dict[int, int]], None] | None,
    ) -> bool:
        """Wait until the output landed, sending it again as needed; return whether
        anything had to be sent again."""
        resent, _ = await self._until_landed(acks, owner, decisions.fires, offers, (), dead)
        for fire in decisions.fires:
            log.info("sensor %s fired: run %s", fire.sensor.id, fire.run_name)
        await self._count_unmatched(decisions.fires)
        for failure in decisions.failures:
            await self._record(failure)
        if not changes:
            return resent
        crash_point("correlation.fires_landed")
        if previous is not None:
            with contextlib.suppress(Exception):  # its partitions went: ours may not have
                await previous
        _check_owner(owner)
        acks = await self._sending([], (), changes)
        resent_changes, landed = await self._until_landed(acks, owner, [], (), changes)
        crash_point("correlation.changes_landed")
        if on_changes is not None:
            on_changes(_ends(landed, changes))
        return resent or resent_changes

    async def _until_landed(
        self,
        acks: list[asyncio.Future[Any]] | None,
        owner: Callable[[], bool] | None,
        fires: list[Fire],
        offers: Sequence[tuple[int, bytes]],
        changes: Sequence[tuple[int, bytes]],
        dead: Sequence[DeadRecord] = (),
    ) -> tuple[bool, list[asyncio.Future[Any]]]:
        """Wait for ``acks``, sending the records again after each error, while ``owner``
        allows; return whether they had to be sent again (``acks`` None: not sent yet),
        and the acknowledgements of the records that landed."""
        resent = acks is None
        while not await _landed(acks):
            _check_owner(owner)
            await asyncio.sleep(_OUTPUT_RETRY)
            acks = await self._sending(fires, offers, changes, dead)
            resent = True
        assert acks is not None
        return resent, acks

    async def _count_unmatched(self, fires: list[Fire]) -> None:
        """Say which runs kept a default because a mapping matched nothing: in the log, and
        counted per sensor for `tripwire sensors status` (best effort, as the workers'
        other status reports are)."""
        counts: dict[str, UnmatchedCount] = {}
        now = datetime.now(UTC)
        for fire in fires:
            for mapping in kept_defaults(fire.info):
                line = mapping.describe()
                log.warning(
                    "sensor %s: run %s kept a default: %s", fire.sensor.id, fire.run_name, line
                )
                entry = counts.get(fire.sensor.id)
                if entry is None:
                    entry = counts[fire.sensor.id] = UnmatchedCount(
                        sensor_id=fire.sensor.id, count=0, last=line, last_run="", last_at=now
                    )
                entry.count += 1
                entry.last, entry.last_run = line, fire.run_name
        s = self.settings
        if not counts or s.sensor_status_interval <= 0:
            return
        try:
            await add_unmatched_counts(self._store, s.project, s.domain, counts.values())
        except Exception:
            log_failure(log, "could not count the mappings that matched nothing")

    async def _record(self, failure: Failure) -> None:
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
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recording a trigger failure failed; retrying")
                await asyncio.sleep(_OUTPUT_RETRY)

    async def _sending(
        self,
        fires: list[Fire],
        offers: Sequence[tuple[int, bytes]],
        changes: Sequence[tuple[int, bytes]],
        dead: Sequence[DeadRecord] = (),
    ) -> list[asyncio.Future[Any]] | None:
        """:meth:`_send`, or None if handing the records over failed (logged)."""
        try:
            return await self._send(fires, offers, changes, dead)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("emitting sensor decisions failed; retrying")
            return None

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


async def _landed(acks: list[asyncio.Future[Any]] | None) -> bool:
    """Whether every acknowledgement came (an error is logged: the caller sends again)."""
    if acks is None:
        return False
    for result in await asyncio.gather(*acks, return_exceptions=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            log.error("emitting sensor decisions failed; retrying: %s", result)
            return False
    return True


def _ends(acks: list[asyncio.Future[Any]], changes: Sequence[tuple[int, bytes]]) -> dict[int, int]:
    """Where ``changes``, which landed with ``acks``, end on each partition: the first offset
    of the partition's first produce batch plus its record count. Records of another
    producer in between would only make that less than the true end, never more."""
    firsts: dict[int, int] = {}
    for ack in acks:
        metadata = ack.result()
        first = firsts.get(metadata.partition)
        firsts[metadata.partition] = (
            metadata.offset if first is None else min(first, metadata.offset)
        )
    counts = Counter(partition for partition, _ in changes)
    return {partition: first + counts[partition] for partition, first in firsts.items()}


def _check_owner(owner: Callable[[], bool] | None) -> None:
    if owner is not None and not owner():
        raise Superseded("the batch's partitions were given to another worker")

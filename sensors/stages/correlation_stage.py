"""The correlation stage: offers in, fires out, state kept fault-tolerant in a changelog.

Each partition of the offers topic carries the events of some (sensor,
correlation key) pairs, so exactly one worker holds each pair's state. After
every batch, what it changed in each key (:class:`~sensors.core.correlator.StateChange`)
is written to the same partition of the changelog topic, and the batch's
offsets are committed only once that landed. A worker that is given a partition
(at start, after a crash or in a rebalance) first replays that changelog
partition, then expires by the clock, so it resumes with at least the state
that the committed offsets imply. Until that replay completed, the partition's
offers are neither handled nor committed (the partition is paused, and
:func:`~sensors.stages.kafka.consume_batches` defers what was fetched already),
as Kafka Streams never processes a task before its restoration: an offer handled
on a half-restored state would be overwritten by the replay. A replay that fails
(the broker just restarted) is retried, with the partition still paused. What it
may see again after a crash are offers whose effects were already written; the id
memory and the deterministic run names make those repeats harmless.

The next batch is correlated while one batch's output is in flight, but its
changelog entries land after this batch's, even when one has to be sent again
(:meth:`~sensors.stages.emitter.Emitter.submit`): a replay depends on their order.

The changelog is written coarsely, one record per partition per batch
(:mod:`sensors.core.wire`), because per-event table updates cap a process at a
few thousand events per second (docs/architecture.md, "Measured facts"). Its
records are deltas under a few keys, which compaction would destroy, so the topic
is created with ``cleanup.policy=delete`` and no retention limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from sensors.core.correlator import Correlator
from sensors.core.types import Decisions, Offer, StateKey
from sensors.core.wire import decode_changes, decode_offers, encode_keyed, pack, partition_of
from sensors.runs.store import log_failure
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import Batch
from sensors.stages.reporter import StatusReporter
from triggers.settings import Settings

__all__ = ["CorrelationStage", "StateRecovery"]

log = logging.getLogger(__name__)

_EXPIRE_EVERY = 1.0  # seconds between sweeps of expired state
_MAX_RECORDS = 5000  # consume_batches' batch size: a full batch means more are waiting
_RESTORE_RETRY = (0.5, 30.0)  # first and longest wait between attempts at a failed replay


class CorrelationStage:
    """Feeds offers to a :class:`Correlator` and persists what changed."""

    def __init__(
        self,
        settings: Settings,
        correlator: Correlator,
        emitter: Emitter,
        partitions: int,
        reporter: StatusReporter | None = None,
    ) -> None:
        self._settings = settings
        self.reporter = reporter
        self.correlator = correlator
        self._emitter = emitter
        self._partitions = partitions
        self._last_expiry = 0.0
        self.offers = 0
        self.fires = 0
        self.owned: set[int] = set()  # offers partitions assigned and restored here
        self._grace = timedelta(seconds=settings.absence_grace)
        self._settled_at = 0.0  # monotonic time from which the clock may decide
        self._behind = False  # the last batch was full: more offers are waiting

    async def handle(self, batch: Batch) -> asyncio.Future[bool]:
        """Correlate a batch and hand its output to the producer; return the future of
        its landing, so that the next batch is correlated while this one's is in flight."""
        now = datetime.now(UTC)
        decisions = Decisions()
        records: list[tuple[int, bytes]] = []
        changed: list[StateKey] = []
        limit = self._settings.max_payload_bytes
        self._behind = sum(len(records) for records in batch.values()) >= _MAX_RECORDS
        for tp, batch_records in batch.items():
            offers = [offer for r in batch_records for offer in _unpack(r.value)]
            self.offers += len(offers)
            done, changes = self.correlator.offer(offers, now)
            decisions.fires += done.fires
            decisions.failures += done.failures
            # A key's offers and its changelog entries share a partition number
            # (records.partition_of), so the record's partition is the changes' too.
            records += [(tp.partition, record) for record in pack(changes, limit)]
            changed += [(c.sensor_id, c.key) for c in changes]
        landed = await self._emitter.submit(decisions, changes=records)
        self.fires += len(decisions.fires)
        expired = self._maybe_expire(now)  # nothing to write: a replay expires by the clock
        if self.reporter is not None:
            self.reporter.holds_changed(changed)
            self.reporter.holds_changed(expired)
        return landed

    async def tick(self) -> None:
        """Fire what the clock decides, expire state, and report what sensors hold."""
        now = datetime.now(UTC)
        changed = self._maybe_expire(now)
        if not self._behind and time.monotonic() >= self._settled_at:
            # Every offer produced before now has been read: an event that is not here
            # by now minus the grace is taken as absent.
            decisions, changes = self.correlator.tick(now, now - self._grace, self._owns_key)
            if decisions.fires or decisions.failures or changes:
                limit = self._settings.max_payload_bytes
                packed = encode_keyed(changes, self._partitions, limit)
                await self._emitter.submit(decisions, changes=packed)
                self.fires += len(decisions.fires)
                changed |= {(c.sensor_id, c.key) for c in changes}
        if self.reporter is not None:
            self.reporter.holds_changed(changed)
            await self.reporter.flush(self.correlator)

    def assigned(self, partitions: set[int]) -> None:
        """Partitions were (re)assigned and restored: let the clock decide only after the
        grace, so that events that arrived while no worker owned them are counted first."""
        self.owned = set(partitions)
        self._settled_at = time.monotonic() + self._grace.total_seconds()

    def ready(self, tp: TopicPartition) -> bool:
        """Whether offers of ``tp`` may be handled: it is ours, and its state is restored."""
        return tp.partition in self.owned

    def _owns_key(self, key: StateKey) -> bool:
        return partition_of(key[0], key[1], self._partitions) in self.owned

    def _maybe_expire(self, now: datetime) -> set[StateKey]:
        clock = time.monotonic()
        if clock - self._last_expiry < _EXPIRE_EVERY:
            return set()
        self._last_expiry = clock
        return self.correlator.expire(now)

    def owns(self, partitions: set[int]) -> Callable[[StateKey], bool]:
        return lambda key: partition_of(key[0], key[1], self._partitions) in partitions


def _unpack(value: bytes | None) -> list[Offer]:
    if not value:
        return []
    try:
        return decode_offers(value)
    except ValueError as exc:
        log.error("skipped a malformed offers record: %s", exc)
        return []


class StateRecovery(ConsumerRebalanceListener):
    """Replays the changelog of partitions as they are assigned; forgets revoked ones.

    The offers consumer is :meth:`attach`-ed once it exists: its newly assigned
    partitions stay paused until their state is restored.
    """

    def __init__(
        self,
        settings: Settings,
        stage: CorrelationStage,
        consumer_factory: Callable[[], AIOKafkaConsumer],
    ) -> None:
        self._settings = settings
        self._stage = stage
        self._consumer_factory = consumer_factory
        self._restored: set[int] = set()
        self._offers: AIOKafkaConsumer | None = None
        self._retrying: asyncio.Task[None] | None = None

    @property
    def retrying(self) -> bool:
        """Whether a failed restore is being tried again."""
        return self._retrying is not None and not self._retrying.done()

    async def close(self) -> None:
        """Stop retrying a restore: the worker stops, or its partitions are revoked."""
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
            self._retrying = None

    def attach(self, offers: AIOKafkaConsumer) -> None:
        """The consumer of the offers topic, whose partitions wait for their restore."""
        self._offers = offers

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.close()  # what a retry restores may not be ours any more
        self._restored -= {tp.partition for tp in revoked}
        self._stage.owned = set(self._restored)
        self._stage.correlator.drop(self._stage.owns(self._restored))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        tps = list(assigned)
        fresh = {tp.partition for tp in tps} - self._restored
        if not fresh:
            return
        self._pause([tp for tp in tps if tp.partition in fresh])
        if not await self._restore(fresh):
            # aiokafka only logs what a listener raises: retry here, partitions paused.
            self._retrying = asyncio.create_task(
                self._keep_restoring(fresh), name="tripwire state restore"
            )

    async def _restore(self, partitions: set[int]) -> bool:
        """Replay ``partitions`` and let their offers through; False if the replay failed."""
        started = time.monotonic()
        try:
            records = await self.replay(partitions)
        except Exception:
            log_failure(
                log,
                "restoring the correlation state of partitions %s failed; their offers wait "
                "until it succeeds",
                sorted(partitions),
            )
            return False
        self._restored |= partitions
        self._stage.assigned(self._restored)
        self._resume(partitions)
        log.info(
            "recovered correlation state of partitions %s from %d changelog records in %.2fs",
            sorted(partitions),
            records,
            time.monotonic() - started,
        )
        return True

    async def _keep_restoring(self, partitions: set[int]) -> None:
        wait, longest = _RESTORE_RETRY
        while True:
            await asyncio.sleep(wait)
            if await self._restore(partitions):
                return
            wait = min(wait * 2, longest)

    def _pause(self, tps: list[TopicPartition]) -> None:
        if self._offers is not None and tps:
            self._offers.pause(*tps)

    def _resume(self, partitions: set[int]) -> None:
        if self._offers is None:
            return
        topic = self._settings.topic_sensor_offers
        assignment = self._offers.assignment()
        self._offers.resume(
            *(tp for tp in assignment if tp.topic == topic and tp.partition in partitions)
        )

    async def replay(self, partitions: set[int]) -> int:
        """Load the state of ``partitions`` from the changelog; return records read."""
        topic = self._settings.topic_sensor_state
        consumer = self._consumer_factory()
        await consumer.start()
        count = 0
        loaded: set[StateKey] = set()
        now = datetime.now(UTC)
        try:
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            correlator = self._stage.correlator
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
                for tp, records in batch.items():
                    for record in records:
                        count += 1
                        try:
                            changes = decode_changes(record.value or b"[]")
                        except ValueError as exc:
                            # Not written by this version of tripwire: nothing in it can
                            # be trusted, and refusing to start would stop every sensor.
                            log.error(
                                "skipped unreadable changelog record %s[%d]@%d: %s",
                                topic,
                                tp.partition,
                                record.offset,
                                exc,
                            )
                            continue
                        for change in changes:
                            correlator.apply(change, now)
                            loaded.add((change.sensor_id, change.key))
                    if records and records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        correlator.expire(now)  # the changelog records no expiry
        if self._stage.reporter is not None:
            # The previous owner may have died before reporting its last changes.
            self._stage.reporter.holds_changed(loaded)
        return count

"""The correlation stage: offers in, fires out, state kept fault-tolerant in a changelog.

Each partition of the offers topic carries the events of some (sensor,
correlation key) pairs, so exactly one worker holds each pair's state. After
every batch, what it changed in each key (:class:`~sensors.core.types.StateChange`)
is written to the same partition of the changelog topic, once the batch's fires
have landed (so a durable changelog record implies its fires are), and the batch's
offsets are committed once that landed too.

A worker that is given a partition (at start, after a crash or in a rebalance)
first replays that changelog partition, writes a fence that opens its epoch, reads
on to the fence, and then resumes the offers where the restored state ends
(:mod:`sensors.core.changelog`). Until then the partition's offers are neither
handled nor committed (the partition is paused, and
:func:`~sensors.stages.kafka.consume_batches` defers what was fetched already),
as Kafka Streams never processes a task before its restoration. A replay that
fails (the broker just restarted) is retried, with the partition still paused.

Time is the partition's watermark, from the marks the sensor stage writes into
the offers partitions, never the wall clock; so a replay decides as the original
did, and the deterministic run names make its repeats harmless. An owner that was
replaced (a rebalance, or a pause past the session timeout) stops: its pending
output is abandoned once the partition is not its own any more, and whatever it
wrote after the new owner's fence is ignored by every later replay.

The changelog is written coarsely, a record per partition per batch, because
per-event table updates cap a process at a few thousand events per second
(docs/architecture.md, "Measured facts"). Its records are deltas under a few
keys, which compaction would destroy, so the topic is created with
``cleanup.policy=delete`` and no retention limit. Instead, snapshots of each
partition's state in the run store bound what a new owner replays, and let the
records before them go (:mod:`sensors.stages.snapshots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from sensors.core.changelog import PartitionLog, correlate
from sensors.core.correlator import Correlator
from sensors.core.types import Decisions, StateKey
from sensors.core.wire import decode_entry, partition_of
from sensors.faults import crash_point
from sensors.runs.outages import log_failure
from sensors.runs.snapshots import Claimed
from sensors.stages import spans
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import Batch
from sensors.stages.reporter import StatusReporter
from sensors.stages.snapshots import Snapshots, Taken
from triggers import tracing
from triggers.settings import Settings

__all__ = ["CorrelationStage", "StateRecovery", "mark_sources"]

log = logging.getLogger(__name__)
_FETCH_END_WITHIN = 10.0  # seconds a restore waits for a fetch to say where the changelog ends

_RESTORE_RETRY = (0.5, 30.0)  # first and longest wait between attempts at a failed replay
_HANDOVER_WAIT = 10.0  # seconds a revoke waits for changelog records in flight, to snapshot


def mark_sources(topics: dict[str, int]) -> frozenset[str]:
    """The sources of a partition's marks: every partition of the sensor stage's input
    topics (topic -> partition count), as ``topic:partition``."""
    return frozenset(f"{t}:{p}" for t, count in topics.items() for p in range(count))


class CorrelationStage:
    """Feeds offers to a :class:`Correlator` and persists what changed."""

    def __init__(
        self,
        settings: Settings,
        correlator: Correlator,
        emitter: Emitter,
        partitions: int,
        sources: frozenset[str],
        reporter: StatusReporter | None = None,
        snapshots: Snapshots | None = None,
    ) -> None:
        self._settings = settings
        self.snapshots = snapshots
        self.reporter = reporter
        self.correlator = correlator
        self._emitter = emitter
        self._partitions = partitions
        self.sources = sources
        self.offers = 0
        self.fires = 0
        self.logs: dict[int, PartitionLog] = {}
        """The offers partitions owned here whose state is restored, by number."""

    @property
    def owned(self) -> set[int]:
        return set(self.logs)

    @property
    def emitter(self) -> Emitter:
        return self._emitter

    async def handle(self, batch: Batch) -> asyncio.Future[bool]:
        """Correlate a batch and hand its output to the producer; return the future of
        its landing, so that the next batch is correlated while this one's is in flight."""
        decisions = Decisions()
        records: list[tuple[int, bytes]] = []
        changed: set[StateKey] = set()
        epochs: dict[int, int] = {}
        written: dict[int, tuple[PartitionLog, int]] = {}  # the number of its last record
        due: list[PartitionLog] = []
        taken: list[Taken] = []
        limit = self._settings.max_payload_bytes
        traced = tracing.spans
        started = spans.now() if traced else 0
        parents: dict[tuple[str, str], str] = {}
        for tp, batch_records in batch.items():
            partition_log = self.logs.get(tp.partition)
            if partition_log is None:
                continue  # revoked since it was read; its new owner reads it again
            out = correlate(
                self.correlator,
                partition_log,
                ((r.offset, r.value) for r in batch_records),
                keep_offers=traced,
            )
            if out.offered:
                parents |= spans.correlated(out.offered, out.changes, started)
            for offset, reason in out.malformed:
                log.error(
                    "skipped a malformed offers record %s[%d]@%d: %s",
                    tp.topic,
                    tp.partition,
                    offset,
                    reason,
                )
            self.offers += out.offers
            decisions.fires += out.decisions.fires
            decisions.failures += out.decisions.failures
            entries = partition_log.write(out.changes, batch_records[-1].offset + 1, limit)
            records += [(tp.partition, entry) for entry in entries]
            changed |= {(c.sensor_id, c.key) for c in out.changes} | out.expired
            epochs[tp.partition] = partition_log.epoch
            if entries:
                written[tp.partition] = (partition_log, partition_log.seq)
                if self.snapshots is not None and self.snapshots.due(partition_log):
                    due.append(partition_log)
        if traced and decisions.fires:
            decisions.fires[:] = spans.fired(decisions.fires, parents)
        if due:
            assert self.snapshots is not None
            taken = self.snapshots.take(due, self.correlator)
        landed = await self._emitter.submit(
            decisions,
            changes=records,
            owner=lambda: self._still_owns(epochs),
            on_changes=lambda ends: self._landed(written, taken, ends),
        )
        self.fires += len(decisions.fires)
        if self.reporter is not None:
            self.reporter.holds_changed(changed)
        return landed

    async def tick(self) -> None:
        """Report what sensors hold. (Time moves with the marks in the offers, not here.)"""
        if self.reporter is not None:
            await self.reporter.flush(self.correlator)

    def _landed(
        self,
        written: dict[int, tuple[PartitionLog, int]],
        taken: list[Taken],
        ends: dict[int, int],
    ) -> None:
        """A batch's changelog records landed, ending at ``ends`` on each partition: note
        it, and save the snapshots taken after the batch."""
        for p, end in ends.items():
            partition_log, seq = written[p]
            if self.logs.get(p) is partition_log:
                partition_log.landed = (seq, end)
        if self.snapshots is not None:
            self.snapshots.save_later(taken, ends)

    async def handover(
        self, partitions: set[int] | None = None, wait: float = _HANDOVER_WAIT
    ) -> None:
        """Snapshot ``partitions`` (all owned ones by default) before they are given away."""
        if self.snapshots is not None:
            logs = [pl for p, pl in self.logs.items() if partitions is None or p in partitions]
            await self.snapshots.handover(logs, self.correlator, self._emitter.changes_landed, wait)

    def ready(self, tp: TopicPartition) -> bool:
        """Whether offers of ``tp`` may be handled: it is ours, and its state is restored."""
        return tp.partition in self.logs

    def _still_owns(self, epochs: dict[int, int]) -> bool:
        """Whether every partition of a batch is still owned here, in the same epoch."""
        logs = self.logs
        return all(p in logs and logs[p].epoch == epoch for p, epoch in epochs.items())

    def owns(self, partitions: set[int]) -> Callable[[StateKey], bool]:
        return lambda key: partition_of(key[0], key[1], self._partitions) in partitions


class StateRecovery(ConsumerRebalanceListener):
    """Restores the state of partitions as they are assigned; forgets revoked ones.

    The offers consumer is :meth:`attach`-ed once it exists: its newly assigned
    partitions stay paused until their state is restored, then resume where that
    state ends.
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
        revoked = list(revoked)
        try:
            await self._stage.handover({tp.partition for tp in revoked})
        except Exception:  # the next owner replays more changelog; nothing is lost
            log.exception("snapshotting partitions before giving them away failed")
        logs = self._stage.logs
        for tp in revoked:
            logs.pop(tp.partition, None)
        self._stage.correlator.drop(self._stage.owns(set(logs)))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        tps = list(assigned)
        fresh = {tp.partition for tp in tps} - set(self._stage.logs)
        if not fresh:
            return
        self._pause([tp for tp in tps if tp.partition in fresh])
        if not await self._restore(fresh):
            # aiokafka only logs what a listener raises: retry here, partitions paused.
            self._retrying = asyncio.create_task(
                self._keep_restoring(fresh), name="tripwire state restore"
            )

    async def _restore(self, partitions: set[int]) -> bool:
        """Restore ``partitions`` and let their offers through; False if that failed."""
        started = time.monotonic()
        try:
            logs, records = await self.replay(partitions, generation=self._generation())
        except Exception:
            log_failure(
                log,
                "restoring the correlation state of partitions %s failed; their offers wait "
                "until it succeeds",
                sorted(partitions),
            )
            return False
        self._stage.logs.update(logs)
        self._resume(logs)
        ignored = sum(partition_log.ignored for partition_log in logs.values())
        log.info(
            "recovered correlation state of partitions %s from %d changelog records "
            "(%d from replaced owners or sent twice, not applied) in %.2fs",
            sorted(partitions),
            records,
            ignored,
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

    def _generation(self) -> int:
        """The consumer group's generation, which every rebalance moves forward: an epoch
        at least this is newer than any an earlier assignment gave."""
        coordinator: Any = getattr(self._offers, "_coordinator", None)
        generation = getattr(coordinator, "generation", 0)
        return generation if isinstance(generation, int) and generation > 0 else 0

    def _pause(self, tps: list[TopicPartition]) -> None:
        if self._offers is not None and tps:
            self._offers.pause(*tps)

    def _resume(self, logs: dict[int, PartitionLog]) -> None:
        """Let the offers of restored partitions through, from where their state ends."""
        if self._offers is None:
            return
        topic = self._settings.topic_sensor_offers
        assignment = self._offers.assignment()
        tps = [tp for tp in assignment if tp.topic == topic and tp.partition in logs]
        for tp in tps:
            offset = logs[tp.partition].offset
            if offset is not None:
                self._offers.seek(tp, offset)
        self._offers.resume(*tps)

    async def replay(
        self, partitions: set[int], *, generation: int = 0
    ) -> tuple[dict[int, PartitionLog], int]:
        """Load the state of ``partitions`` from the changelog and fence it: read to the
        end, write a fence that opens this owner's epoch, and read on to the fence, so
        that what a replaced owner wrote before the fence counts and nothing after it.
        Return the partitions' logs and the number of records read."""
        topic = self._settings.topic_sensor_state
        stage = self._stage
        logs = {p: PartitionLog(p, stage.sources) for p in partitions}
        # Claimed before the fence, so no earlier owner's snapshot is saved after it.
        claims = await stage.snapshots.claim(partitions) if stage.snapshots else {}
        consumer = self._consumer_factory()
        await consumer.start()
        loaded: set[StateKey] = set()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            firsts = await consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, firsts[tp])
            ends = await _ends(consumer, tps, claims)
            for tp in tps:
                consumer.seek(tp, firsts[tp])
                if tp.partition in claims:
                    start = await self._start(
                        claims[tp.partition], logs[tp.partition], loaded, (firsts[tp], ends[tp])
                    )
                    consumer.seek(tp, start)
            count = await self._read(consumer, logs, ends, loaded)
            producer = stage.emitter.producer
            fences = {}
            for tp in tps:
                sent = await producer.send_and_wait(
                    topic, logs[tp.partition].fence(generation), partition=tp.partition
                )
                fences[tp] = sent.offset + 1
            count += await self._read(consumer, logs, fences, loaded)
        finally:
            await consumer.stop()
        crash_point("correlation.fenced")
        for partition_log in logs.values():
            loaded |= partition_log.restored(stage.correlator)
        if stage.reporter is not None:
            # The previous owner may have died before reporting its last changes.
            stage.reporter.holds_changed(loaded)
        return logs, count

    async def _start(
        self,
        claimed: Claimed,
        partition_log: PartitionLog,
        loaded: set[StateKey],
        held: tuple[int, int],
    ) -> int:
        """Start ``partition_log``'s replay from the snapshot ``claimed`` found, if any and
        usable; return the changelog offset to read on from."""
        assert self._stage.snapshots is not None
        partition_log.claim = claimed.claim
        start = await self._stage.snapshots.load(
            claimed, partition_log, self._stage.correlator, held
        )
        if start is None:
            return held[0]
        offset, keys = start
        loaded |= keys
        log.info(
            "partition %d: loaded a snapshot of %d keys; replaying the changelog from offset %d",
            partition_log.partition,
            len(keys),
            offset,
        )
        return offset

    async def _read(
        self,
        consumer: AIOKafkaConsumer,
        logs: dict[int, PartitionLog],
        until: dict[TopicPartition, int],
        loaded: set[StateKey],
    ) -> int:
        """Apply changelog records from the consumer's positions up to ``until``."""
        correlator = self._stage.correlator
        count = 0
        remaining = {tp for tp, end in until.items() if end > await consumer.position(tp)}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                partition_log = logs[tp.partition]
                for record in records:
                    if record.offset >= until[tp]:
                        break
                    count += 1
                    try:
                        entry = decode_entry(record.value or b"[]")
                    except ValueError as exc:
                        # Not written by this version of tripwire: nothing in it can
                        # be trusted, and refusing to start would stop every sensor.
                        log.error(
                            "skipped unreadable changelog record %s[%d]@%d: %s",
                            tp.topic,
                            tp.partition,
                            record.offset,
                            exc,
                        )
                        continue
                    for change in partition_log.replay(entry, correlator):
                        loaded.add((change.sensor_id, change.key))
                if records and records[-1].offset + 1 >= until[tp]:
                    remaining.discard(tp)
        return count


async def _ends(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], claims: dict[int, Claimed]
) -> dict[TopicPartition, int]:
    """Where each changelog partition ends. A broker may answer ListOffsets short of what
    it acknowledged (Tansu keeping its data in S3 does, until the partition's next write),
    which would make a snapshot at the very end look past it; so where a claimed
    snapshot lies past the listed end, the end is the high watermark of a fetch instead,
    which that broker gets right. A fetch past the real end (the broker lost the records)
    starts over from the first record, the consumer's ``auto_offset_reset``."""
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        claimed = claims.get(tp.partition)
        at = claimed.changelog_offset if claimed is not None else None
        if at is None or at <= ends[tp]:
            continue
        consumer.seek(tp, at)
        deadline = asyncio.get_running_loop().time() + _FETCH_END_WITHIN
        while consumer.highwater(tp) is None and asyncio.get_running_loop().time() < deadline:
            await consumer.getmany(tp, timeout_ms=100, max_records=1)
        highwater = consumer.highwater(tp)
        if highwater is None:
            log.warning(
                "partition %d: the broker lists its changelog's end as %d, short of the "
                "snapshot at %d, and no fetch answered in %gs to say more",
                tp.partition,
                ends[tp],
                at,
                _FETCH_END_WITHIN,
            )
        ends[tp] = max(ends[tp], highwater or 0)
    return ends

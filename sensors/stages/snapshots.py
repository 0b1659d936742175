"""Snapshots of the correlation state, so that taking a partition over reads what is live,
not the deployment's history.

The correlation stage writes a changelog record per partition per batch, and the changelog is
never compacted (its records are deltas). A new owner that replayed all of it would take
longer to take over the longer the deployment ran. So each owner saves, per partition, a
snapshot of the partition's whole state in the run store (sensors/runs/snapshots.py), and a
new owner loads the latest and replays only the changelog after it:

- **When.** After a batch, once the changelog the owner wrote since its last snapshot is as
  big as that snapshot (and at least :data:`FLOOR`), or ``TRIPWIRE_SNAPSHOT_INTERVAL``
  seconds after it; and when it gives the partition away (a rebalance, a stop). So a replay
  reads about as much changelog as there is live state.
- **Consistent.** A snapshot is the state right after a batch, encoded before the next batch
  is correlated, and saved only once that batch's changelog records landed (which implies
  its fires did), with where they end.
- **Fenced.** It is saved under the owner's claim, which a new owner moves on before it
  writes its fence: a replaced owner's snapshot is refused.
- **Then the history goes.** Once a snapshot is saved, the changelog records before it are
  deleted (Kafka's DeleteRecords). A broker that cannot delete records (Tansu) keeps them,
  and recovery still starts at the snapshot.

Encoding a snapshot costs about a microsecond per key, on the event loop between two
batches; compressing it and saving it happen off the batch's path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from sensors.core.changelog import PartitionLog
from sensors.core.correlator import Correlator
from sensors.core.types import StateKey
from sensors.core.wire import decode_snapshot, encode_snapshot
from sensors.faults import crash_point
from sensors.runs import snapshots as stored
from sensors.runs.outages import log_failure
from sensors.runs.store import RunStore
from triggers.kafka_client import connect
from triggers.settings import Settings

__all__ = ["FLOOR", "Snapshots", "Taken"]

log = logging.getLogger(__name__)

FLOOR = 256 * 1024
"""Bytes of changelog since the last snapshot below which only the interval takes one."""
_REFUSALS = 3  # deletes refused in a row after which a worker pauses asking the broker
_LOOK_AGAIN = 0.05  # seconds a handover waits for a batch between its correlation and its send
_ASK_AGAIN = 600.0  # seconds such a pause lasts: Tansu never deletes, a real broker had a blip


@dataclass(frozen=True)
class Taken:
    """A snapshot encoded after a batch, to be saved once that batch's changelog landed."""

    partition: int
    claim: int
    data: bytes
    keys: int


class Snapshots:
    """Takes, saves and loads one worker's snapshots of the partitions it owns."""

    def __init__(self, settings: Settings, store: RunStore, owner: str) -> None:
        self._settings = settings
        self._store = store
        self.owner = owner
        self.topic = settings.topic_sensor_state
        self._taken_at: dict[int, float] = {}
        self._sizes: dict[int, int] = {}
        self._saving: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()  # saves go one at a time, in the order taken
        self._admin: AIOKafkaAdminClient | None = None
        self._refusals = 0  # deletes the broker refused in a row
        self._ask_again = 0.0  # monotonic time before which no delete is asked for
        self._closed = False
        self.saved = 0

    async def close(self) -> None:
        """Finish the saves and deletes under way, and close the admin connection."""
        while self._saving:
            await asyncio.gather(*self._saving, return_exceptions=True)
        self._closed = True
        await self._close_admin()

    async def _close_admin(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()

    # the owner's side

    def due(self, partition_log: PartitionLog) -> bool:
        """Whether to snapshot ``partition_log``'s partition after the batch it just wrote."""
        if not partition_log.unsaved:
            return False
        p = partition_log.partition
        if partition_log.unsaved >= max(FLOOR, self._sizes.get(p, 0)):
            return True
        now = time.monotonic()
        taken = self._taken_at.setdefault(p, now)  # a new owner: the interval starts now
        return now - taken >= self._settings.snapshot_interval

    def take(self, logs: Iterable[PartitionLog], correlator: Correlator) -> list[Taken]:
        """Encode the state of the partitions of ``logs`` now, in one pass over the state."""
        by_partition = {pl.partition: pl for pl in logs}
        states = correlator.snapshot(set(by_partition))
        taken = []
        for p, partition_log in by_partition.items():
            snapshot = partition_log.snapshot(states[p])
            self._taken_at[p] = time.monotonic()
            data = encode_snapshot(snapshot)
            taken.append(Taken(p, partition_log.claim, data, len(snapshot.changes)))
        return taken

    def save_later(self, taken: Iterable[Taken], ends: dict[int, int]) -> None:
        """Save each of ``taken`` whose batch's changelog landed, ending at ``ends``
        (:meth:`~sensors.stages.emitter.Emitter.submit`, ``on_changes``)."""
        for snapshot in taken:
            offset = ends.get(snapshot.partition)
            if offset is not None:
                task = asyncio.create_task(self.save(snapshot, offset))
                self._saving.add(task)
                task.add_done_callback(self._saving.discard)

    async def save(self, taken: Taken, changelog_offset: int) -> bool:
        """Save ``taken``, which covers the changelog up to ``changelog_offset``; then delete
        the records before it. Return whether it was saved (not: a new owner claimed the
        partition, or the store failed, which is logged and tried again after a batch)."""
        p = taken.partition
        async with self._lock:
            data = await asyncio.to_thread(zlib.compress, taken.data, 1)
            try:
                saved = await stored.save(
                    self._store, self.topic, p, taken.claim, changelog_offset, data, taken.keys
                )
            except Exception:  # the next one is due after the interval, as usual
                log_failure(log, "saving a snapshot of partition %d failed", p)
                return False
            crash_point("snapshot.saved")
            if not saved:
                log.info(
                    "not saving a snapshot of partition %d: another worker took it over, or "
                    "a later snapshot was saved first",
                    p,
                )
                return False
            self._sizes[p] = len(taken.data)
            self.saved += 1
            log.debug(
                "saved a snapshot of partition %d: %d keys, %d bytes, changelog from %d",
                p,
                taken.keys,
                len(data),
                changelog_offset,
            )
            if not self._closed:  # off the save's path: a rebalance waits for saves
                task = asyncio.create_task(self._delete_before(p, changelog_offset))
                self._saving.add(task)
                task.add_done_callback(self._saving.discard)
            return True

    async def handover(
        self,
        logs: Iterable[PartitionLog],
        correlator: Correlator,
        landing: Callable[[float], Awaitable[None]],
        wait: float,
    ) -> None:
        """Snapshot each of ``logs`` that changed since its last snapshot, before its
        partition is given away, once all it wrote landed: ``landing(timeout)`` waits for
        the changelog records in flight, for at most ``wait`` seconds in all."""
        pending = [pl for pl in logs if pl.unsaved]
        deadline = time.monotonic() + wait
        while pending and (left := deadline - time.monotonic()) > 0:
            await landing(left)
            ready = [pl for pl in pending if pl.landed and pl.landed[0] == pl.seq]
            if not ready:
                await asyncio.sleep(_LOOK_AGAIN)  # a batch is still being handed over
                continue
            for partition_log, taken in zip(ready, self.take(ready, correlator), strict=True):
                assert partition_log.landed is not None
                pending.remove(partition_log)
                await self.save(taken, partition_log.landed[1])
        for partition_log in pending:
            log.info(
                "gave partition %d away without a snapshot: its last changelog records did "
                "not land within %.0fs; its next owner replays them",
                partition_log.partition,
                wait,
            )

    async def _delete_before(self, partition: int, offset: int) -> None:
        """Delete the changelog records before ``offset``, which a saved snapshot covers."""
        if time.monotonic() < self._ask_again:
            return
        connection = self._settings.kafka_connection()
        try:
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(**connection)
                await connect(self._admin, connection)
            tp = TopicPartition(self.topic, partition)
            await self._admin.delete_records({tp: RecordsToDelete(offset)}, timeout_ms=10_000)
            self._refusals = 0
        except Exception as exc:
            # Tansu closes the connection: it lists DeleteRecords but does not implement it.
            await self._close_admin()
            self._refusals += 1
            pause = self._refusals >= _REFUSALS
            if pause:
                self._refusals = 0
                self._ask_again = time.monotonic() + _ASK_AGAIN
            log.info(
                "the broker did not delete the changelog records before a snapshot (%s)%s",
                str(exc) or type(exc).__name__,
                f"; not asking again for {_ASK_AGAIN:.0f}s: meanwhile the changelog keeps its "
                "history, and a new owner still replays only what follows the latest snapshot"
                if pause
                else "",
            )

    # the new owner's side

    async def claim(self, partitions: Iterable[int]) -> dict[int, stored.Claimed]:
        """Take ``partitions`` over in the store, before fencing their changelog."""
        return await stored.claim(self._store, self.topic, partitions, self.owner)

    async def load(
        self,
        claimed: stored.Claimed,
        partition_log: PartitionLog,
        correlator: Correlator,
        held: tuple[int, int],
    ) -> tuple[int, set[StateKey]] | None:
        """Load the snapshot ``claimed`` found, if the changelog partition, which ``held``
        offsets (first, end), still holds what follows it; return where to read on, and
        the keys it loaded. None: replay the whole changelog partition."""
        p, at = partition_log.partition, claimed.changelog_offset
        if claimed.data is None or at is None:
            return None
        first, end = held
        if not first <= at <= end:
            log.warning(
                "the snapshot of partition %d covers its changelog up to offset %d, but the "
                "changelog holds offsets %d to %d: the broker lost it (a broker without "
                "storage restarted); replaying what it holds instead",
                p,
                at,
                first,
                end,
            )
            await stored.forget(self._store, self.topic, p, claimed.claim)
            return None
        try:
            snapshot = decode_snapshot(await asyncio.to_thread(zlib.decompress, claimed.data))
        except (ValueError, zlib.error) as exc:
            lost = (
                f"; the records before offset {first} were deleted, so what they held is lost"
                if first
                else ""
            )
            log.error(
                "the snapshot of partition %d cannot be read (%s: written by another version "
                "of tripwire?); replaying the changelog from offset %d instead%s",
                p,
                exc,
                first,
                lost,
            )
            return None
        return at, partition_log.load(snapshot, correlator)

"""One offers partition's log and changelog, as its owner writes them and a new owner
reads them back. Pure: records in, state and records out.

The correlation stage keeps the state of each offers partition in a changelog
partition of the same number. Three things make a replay of that changelog, plus
the offers after it, decide exactly as the original owner did
(docs/architecture.md, "State and the changelog"):

- **Time comes from the log.** The sensor stage writes *marks* into every offers
  partition: how far it has routed each of its input partitions. A partition's
  :class:`Clock` turns them into a watermark, the time up to which every event has
  been offered; the correlator decides by it and by event times, never by a clock.
- **Only the current owner's records count.** An owner that takes a partition
  writes a *fence* that opens its *epoch*, after reading the changelog to its end.
  A replay ignores the records of an older epoch that come after a newer one's
  fence: what a paused or partitioned old owner writes once it was replaced.
- **A record counts only after its predecessors.** An owner numbers its records;
  a replay applies them in number order and ignores a repeat (a record sent again)
  or one whose predecessor never landed (the owner died first). A batch's records
  apply together, when its last one, which names the offers offset the batch
  covered up to, is read. The new owner resumes the offers there.

A replay need not start at the changelog's beginning: an owner saves a :class:`Snapshot`
of a partition's whole state now and then (:meth:`PartitionLog.snapshot`), and a new
owner loads the latest (:meth:`PartitionLog.load`) and reads on from the first record it
does not cover. The snapshot carries the epoch and number of the last record it covers,
so what follows is read exactly as if the replay had read up to there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sensors.core.correlator import Correlator
from sensors.core.types import Decisions, Offer, StateChange, StateKey
from sensors.core.wire import Entry, Snapshot, decode_offers_record, encode_entry

__all__ = ["Clock", "Outcome", "PartitionLog", "correlate"]


class Clock:
    """A partition's watermark: the oldest of the latest marks of its ``sources`` (the
    input partitions of the sensor stage, as ``topic:partition``); None until each has
    one. Marks only move forward."""

    def __init__(self, sources: Iterable[str]) -> None:
        self.sources = frozenset(sources)
        self.marks: dict[str, int] = {}
        self.watermark: datetime | None = None

    def mark(self, marks: dict[str, int]) -> bool:
        """Take a record of marks; return whether the watermark moved."""
        current = self.marks
        for source, at in marks.items():
            if at > current.get(source, -1):
                current[source] = at
        return self._settle()

    def restore(self, marks: dict[str, int]) -> None:
        self.marks = dict(marks)
        self._settle()

    def _settle(self) -> bool:
        if not self.sources or any(s not in self.marks for s in self.sources):
            return False
        ms = min(self.marks[s] for s in self.sources)
        watermark = datetime.fromtimestamp(ms / 1000, UTC)
        if self.watermark is not None and watermark <= self.watermark:
            return False
        self.watermark = watermark
        return True


class PartitionLog:
    """What the owner of one offers partition keeps besides the correlator's state: its
    epoch, the number of its last changelog record, the offers offset its state covers
    up to, and the partition's clock."""

    def __init__(self, partition: int, sources: Iterable[str]) -> None:
        self.partition = partition
        self.clock = Clock(sources)
        self.epoch = 0
        self.seq = 0
        self.offset: int | None = None
        """The offers offset the state covers up to: of the last batch replayed, or, for
        its owner, of the last batch it handled, whether or not it changed anything."""
        self.ignored = 0
        """Records a replay did not apply: an older owner's, repeats, and orphans."""
        self._batch: list[StateChange] = []
        self.claim = 0
        """This ownership's claim in the run store, under which its snapshots are saved."""
        self.unsaved = 0
        """Bytes of changelog records this owner wrote since its last snapshot."""
        self.landed: tuple[int, int] | None = None
        """The number of this owner's last changelog record known to have landed, and an
        offset past it and every record before it, before any record written after it."""

    # reading: a new owner's replay

    def read(self, entry: Entry) -> list[StateChange]:
        """Take the next changelog record; return the changes to apply now (those of a
        batch whose last record this is), with :attr:`watermark` as of that batch."""
        if entry.legacy:  # written before epochs: in log order, as it was then
            if self.epoch == 0:
                return entry.changes
            self.ignored += 1
            return []
        if entry.epoch < self.epoch:
            self.ignored += 1  # an owner that was replaced
            return []
        if entry.epoch > self.epoch:  # a fence: a new owner took over from here
            self.epoch = entry.epoch
            self._batch = []  # a batch its predecessor did not finish writing
        if entry.fence:
            return []
        if entry.seq != self.seq + 1:
            self.ignored += 1  # sent twice, or its predecessor never landed
            return []
        self.seq = entry.seq
        self._batch += entry.changes
        if entry.offset is None:
            return []
        batch, self._batch = self._batch, []
        self.offset = entry.offset
        if entry.marks is not None:
            self.clock.restore(entry.marks)
        return batch

    def replay(self, entry: Entry, correlator: Correlator) -> list[StateChange]:
        """:meth:`read` ``entry`` and apply what it completes to ``correlator``; return that.

        What the watermark of the batch leaves behind expires at once, as it did for the
        owner that wrote it, so a replay holds no more than the live state did."""
        changes = self.read(entry)
        watermark = self.clock.watermark
        for change in changes:
            correlator.apply(change, watermark)
        if changes and watermark is not None:
            correlator.expire(watermark, self.partition)
        return changes

    def restored(self, correlator: Correlator) -> set[StateKey]:
        """Once the replay is over: expire what the restored watermark leaves behind, as
        the original owner did; return the keys that changed."""
        watermark = self.clock.watermark
        return set() if watermark is None else correlator.expire(watermark, self.partition)

    def load(self, snapshot: Snapshot, correlator: Correlator) -> set[StateKey]:
        """Start the replay from ``snapshot`` rather than the changelog's beginning: the
        records after the last one it covers are read next. Return the keys it holds."""
        self.epoch, self.seq, self.offset = snapshot.epoch, snapshot.seq, snapshot.offset
        self.clock.restore(snapshot.marks)
        watermark = self.clock.watermark
        for change in snapshot.changes:
            correlator.apply(change, watermark)
        return {(change.sensor_id, change.key) for change in snapshot.changes}

    def snapshot(self, changes: list[StateChange]) -> Snapshot:
        """The partition's whole state, ``changes`` (``Correlator.snapshot``), as of the
        last batch :meth:`write` was given: its offers offset and marks, and the number of
        the last record this owner wrote."""
        self.unsaved = 0
        return Snapshot(self.epoch, self.seq, self.offset, dict(self.clock.marks), changes)

    def fence(self, generation: int) -> bytes:
        """The record that opens this owner's epoch, once it has read the changelog to its
        end: newer than every epoch there, and than the consumer group's ``generation``.
        The epoch takes effect when the record is read back (:meth:`read`), so what an
        old owner wrote before it still counts."""
        return encode_entry(Entry(max(generation, self.epoch + 1), fence=True))

    @property
    def watermark(self) -> datetime | None:
        return self.clock.watermark

    # writing: the owner's batches

    def write(self, changes: Sequence[StateChange], offset: int, limit: int) -> list[bytes]:
        """The changelog records of a batch that covered the offers up to ``offset``:
        ``changes`` in records of at most ``limit`` bytes (or one change each, when
        bigger), numbered on from the last."""
        self.offset = offset
        if not changes:
            return []
        records = self._records(list(changes), offset, limit, last=True)
        self.unsaved += sum(map(len, records))
        return records

    def _records(
        self, changes: list[StateChange], offset: int, limit: int, *, last: bool
    ) -> list[bytes]:
        # One encoding for a batch that fits, the usual case; halves until each fits.
        marks = dict(self.clock.marks) if last else None
        entry = Entry(self.epoch, self.seq + 1, changes, offset if last else None, marks)
        record = encode_entry(entry)
        if len(record) <= limit or len(changes) == 1:
            self.seq += 1
            return [record]
        half = len(changes) // 2
        first = self._records(changes[:half], offset, limit, last=False)
        return first + self._records(changes[half:], offset, limit, last=last)


@dataclass
class Outcome:
    """What correlating a run of one partition's offers records gave."""

    decisions: Decisions = field(default_factory=Decisions)
    changes: list[StateChange] = field(default_factory=list)
    expired: set[StateKey] = field(default_factory=set)
    offers: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)
    """(offset, reason) of records that could not be read; skipped."""
    offered: list[Offer] | None = None
    """The offers decided, kept only when this is a list to begin with (for spans)."""

    def add(self, decisions: Decisions, changes: list[StateChange]) -> None:
        self.decisions.fires += decisions.fires
        self.decisions.failures += decisions.failures
        self.changes += changes


def correlate(
    correlator: Correlator,
    log: PartitionLog,
    records: Iterable[tuple[int, bytes | None]],
    *,
    keep_offers: bool = False,
) -> Outcome:
    """Correlate (offset, value) records of the offers partition of ``log``, in log order.

    Offers are decided at the watermark as of their record; a marks record moves the
    watermark, and with it decides absences and ends of quiet periods, and expires.
    With ``keep_offers``, the outcome lists the offers too.
    """
    out = Outcome(offered=[] if keep_offers else None)
    partition = log.partition
    offers: list[Offer] = []
    for offset, value in records:
        try:
            item = decode_offers_record(value)
        except ValueError as exc:
            out.malformed.append((offset, str(exc)))
            continue
        if isinstance(item, list):
            offers += item
            continue
        if offers:
            _offer(correlator, log, offers, out)
            offers = []
        if log.clock.mark(item):
            watermark = log.watermark
            assert watermark is not None
            out.add(*correlator.advance(watermark, partition))
            out.expired |= correlator.expire(watermark, partition)
    if offers:
        _offer(correlator, log, offers, out)
    return out


def _offer(correlator: Correlator, log: PartitionLog, offers: list[Offer], out: Outcome) -> None:
    """Decide ``offers`` at the partition's watermark, and expire at it at once: what an
    offer brought from before the window (an absence's late event) goes now, as a replay
    of the batch's changes, trimmed at the same watermark, drops it."""
    watermark = log.watermark
    out.add(*correlator.offer(offers, watermark, log.partition))
    out.offers += len(offers)
    if out.offered is not None:
        out.offered += offers
    if watermark is not None:
        out.expired |= correlator.expire(watermark, log.partition)

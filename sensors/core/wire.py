"""The engine's own Kafka records: packed offers and correlation-state changes.

Both are JSON arrays that msgspec encodes from, and decodes into, the core's own
types (:class:`~sensors.core.types.Offer`, :class:`~sensors.core.types.StateChange`),
in C and without an intermediate dict: well under a microsecond per item, where the
stdlib ``json`` round trip through dicts cost about 20 µs per event (bench/sensors.py).

A batch becomes one record per partition, or a few when it is bigger than ``limit``
bytes, encoded in one call each, instead of one per event: a produce costs about 15 µs
(docs/architecture.md, "Measured facts"), more than the whole per-event budget.

A fire becomes a run request here too (:func:`run_request`).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from sensors.core.types import Fire, Offer, StateChange

__all__ = [
    "Entry",
    "Marks",
    "Snapshot",
    "run_request",
    "decode_changes",
    "decode_entry",
    "decode_offers",
    "decode_offers_record",
    "decode_snapshot",
    "encode_entry",
    "encode_marks",
    "encode_keyed",
    "encode_snapshot",
    "key_partition",
    "pack",
    "partition_of",
]


class Entry(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One changelog record: some of a batch's state changes, written by one owner.

    ``epoch`` is the owner's (:mod:`sensors.core.changelog`): a replay ignores the
    records of an owner older than one it has seen. ``seq`` numbers an owner's records
    so a replay can tell a record sent twice, or one whose predecessor never landed.
    A batch's last record carries ``offset``, the offers offset it covered up to, and
    ``marks``, the partition's progress marks then. A ``fence`` opens an epoch.
    """

    epoch: int
    seq: int = 0
    changes: list[StateChange] = msgspec.field(default_factory=list)
    offset: int | None = None
    marks: dict[str, int] | None = None
    fence: bool = False
    legacy: bool = False
    """Written by a version of tripwire before epochs: applied in log order, as then."""


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """The whole state of one offers partition after a batch, as its owner saves it
    (:mod:`sensors.core.changelog`): the owner's ``epoch`` and the ``seq`` of its last
    changelog record, the offers ``offset`` and ``marks`` the state covers, and each key's
    state as a :class:`~sensors.core.types.StateChange` that holds all of it (every id
    the window remembers, not only a batch's)."""

    epoch: int
    seq: int
    offset: int | None
    marks: dict[str, int]
    changes: list[StateChange]


class Marks(msgspec.Struct, frozen=True, gc=False):
    """A record on the offers topic that carries no offers: how far the sensor stage
    has routed its input partitions (``topic:partition`` -> epoch milliseconds)."""

    marks: dict[str, int]


_encode = msgspec.json.Encoder().encode
_offers = msgspec.json.Decoder(list[Offer]).decode
_changes = msgspec.json.Decoder(list[StateChange]).decode
_entry = msgspec.json.Decoder(Entry).decode
_marks = msgspec.json.Decoder(Marks).decode
_snapshot = msgspec.json.Decoder(Snapshot).decode


def partition_of(sensor_id: str, key: str, partitions: int) -> int:
    """The offers (and state changelog) partition of a sensor's correlation key."""
    return key_partition(f"{sensor_id}\x1f{key}".encode(), partitions)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition of a record key: crc32, not hash(), so every worker process agrees."""
    return zlib.crc32(key) % partitions


def pack(items: Sequence[Any], limit: int) -> list[bytes]:
    """``items`` as JSON arrays of at most ``limit`` bytes each, in order.

    One encoder call per record, not per item: a batch that fits (the usual case) is
    encoded once, and one that does not is halved until its parts fit. An item
    bigger than ``limit`` on its own gets a record of its own; the producer's
    ``max_request_size`` leaves room for that (sensors.stages.kafka).
    """
    if not items:
        return []
    record = _encode(items)
    if len(record) <= limit or len(items) == 1:
        return [record]
    half = len(items) // 2
    return pack(items[:half], limit) + pack(items[half:], limit)


def encode_keyed(
    items: Iterable[Offer] | Iterable[StateChange], partitions: int, limit: int
) -> list[tuple[int, bytes]]:
    """(partition, record) pairs that carry offers or state changes, each to its key's
    partition (:func:`partition_of`)."""
    grouped: dict[int, list[Offer | StateChange]] = defaultdict(list)
    for item in items:
        grouped[partition_of(item.sensor_id, item.key, partitions)].append(item)
    return [(p, record) for p, group in grouped.items() for record in pack(group, limit)]


def decode_offers(value: bytes) -> list[Offer]:
    """The offers in one record. Raises ``msgspec.DecodeError`` (a ValueError) if malformed."""
    return _offers(value)


def decode_changes(value: bytes) -> list[StateChange]:
    """The state changes in a changelog record written before epochs (a bare array)."""
    return _changes(value)


def encode_marks(marks: dict[str, int]) -> bytes:
    """A record of progress marks for the offers topic (:class:`Marks`)."""
    return _encode(Marks(marks))


def decode_offers_record(value: bytes | None) -> list[Offer] | dict[str, int]:
    """An offers-topic record: its offers, or, for a :class:`Marks` record, the marks.
    Raises ``msgspec.DecodeError`` (a ValueError) if malformed."""
    if not value:
        return []
    if value[:1] == b"{":
        return _marks(value).marks
    return _offers(value)


def encode_entry(entry: Entry) -> bytes:
    return _encode(entry)


def decode_entry(value: bytes) -> Entry:
    """One changelog record; one written before epochs (a bare array of changes) comes
    back as a ``legacy`` entry. Raises ``msgspec.DecodeError`` (a ValueError) if malformed."""
    if value[:1] == b"[":
        return Entry(0, changes=_changes(value), legacy=True)
    return _entry(value)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return _encode(snapshot)


def decode_snapshot(value: bytes) -> Snapshot:
    """A partition's snapshot. Raises ``msgspec.DecodeError`` (a ValueError) if malformed."""
    return _snapshot(value)


def run_request(fire: Fire) -> bytes:
    """The run request a fire becomes, as the JSON of a ``NewRun``: everything the
    launcher needs, nothing to look up.

    Encoded by msgspec rather than through the pydantic model (a third of the
    per-fire cost), after the sensor's fields, which are encoded once: every field
    comes from a deployed sensor or was coerced already, and the launcher
    validates what it reads as a ``NewRun``.
    """
    fields = {
        "name": fire.run_name,
        "parameters": fire.parameters,
        "events": fire.events,
        "consumes": fire.consumes,
    }
    if fire.info is not None:
        fields["trigger_info"] = fire.info
    if fire.traceparent is not None:
        fields["traceparent"] = fire.traceparent
        if fire.tracestate:
            fields["tracestate"] = fire.tracestate
    tail = _encode(fields)
    return b"%s,%s" % (fire.sensor.request_head, tail[1:])

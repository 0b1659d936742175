"""The engine's own Kafka records: packed offers and correlation-state changes.

Both are JSON arrays that msgspec encodes from, and decodes into, the core's own
types (:class:`~sensors.correlate.Offer`, :class:`~sensors.correlate.StateChange`), in C and
without an intermediate dict: well under a microsecond per item, where the
stdlib ``json`` round trip through dicts cost about 20 µs per event (bench/sensors.py).

A batch becomes one record per partition, or a few when it is bigger than
``limit`` bytes, encoded in one call each, instead of one per event: a produce costs about 15 µs
(DESIGN.md §5), more than the whole per-event budget.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from sensors.decisions import Offer, StateChange

__all__ = [
    "decode_changes",
    "decode_offers",
    "encode_keyed",
    "key_partition",
    "pack",
    "partition_of",
]


_encode = msgspec.json.Encoder().encode
_offers = msgspec.json.Decoder(list[Offer]).decode
_changes = msgspec.json.Decoder(list[StateChange]).decode


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
    ``max_request_size`` leaves room for that (sensors.kafka).
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
    """The state changes in one changelog record."""
    return _changes(value)

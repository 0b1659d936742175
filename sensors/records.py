"""The engine's own Kafka records: packed offers and correlation-state changes.

Both are JSON arrays that msgspec encodes from, and decodes into, the core's own
types (:class:`~sensors.correlate.Offer`, :class:`~sensors.correlate.StateChange`), in C and
without an intermediate dict: well under a microsecond per item, where the
stdlib ``json`` round trip through dicts cost about 20 µs per event (bench/sensors.py).

A batch becomes one record per partition, or a few when it is bigger than
``limit`` bytes, instead of one per event: a produce costs about 15 µs
(DESIGN.md §5), more than the whole per-event budget.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator

import msgspec

from sensors.correlate import Offer, StateChange, StateKey

__all__ = [
    "decode_changes",
    "decode_offers",
    "encode_changes",
    "encode_offers",
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


def pack(items: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """JSON arrays of the encoded ``items``, each at most ``limit`` bytes.

    An item bigger than ``limit`` on its own gets a record of its own; the
    producer's ``max_request_size`` leaves room for that (sensors.kafka).
    """
    chunk: list[bytes] = []
    size = 2
    for item in items:
        if chunk and size + len(item) + 1 > limit:
            yield b"[" + b",".join(chunk) + b"]"
            chunk, size = [], 2
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield b"[" + b",".join(chunk) + b"]"


def _by_partition(
    items: Iterable[tuple[StateKey, bytes]], partitions: int, limit: int
) -> list[tuple[int, bytes]]:
    grouped: dict[int, list[bytes]] = defaultdict(list)
    for (sensor_id, key), encoded in items:
        grouped[partition_of(sensor_id, key, partitions)].append(encoded)
    return [(p, record) for p, group in grouped.items() for record in pack(group, limit)]


def encode_offers(offers: Iterable[Offer], partitions: int, limit: int) -> list[tuple[int, bytes]]:
    """(partition, record) pairs that carry ``offers``, each to its key's partition."""
    return _by_partition((((o.sensor_id, o.key), _encode(o)) for o in offers), partitions, limit)


def decode_offers(value: bytes) -> list[Offer]:
    """The offers in one record. Raises ``msgspec.DecodeError`` (a ValueError) if malformed."""
    return _offers(value)


def encode_changes(
    changes: Iterable[StateChange], partitions: int, limit: int
) -> list[tuple[int, bytes]]:
    """(partition, record) pairs for the changelog: each change to its key's partition."""
    return _by_partition((((c.sensor_id, c.key), _encode(c)) for c in changes), partitions, limit)


def decode_changes(value: bytes) -> list[StateChange]:
    """The state changes in one changelog record."""
    return _changes(value)

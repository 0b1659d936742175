"""The latest snapshot of each changelog partition's correlation state, and its fence.

A worker that is given an offers partition loads the partition's latest snapshot from
here and replays only the changelog records after it (sensors/stages/snapshots.py), so
recovery reads what is live, not the deployment's history.

The row is also what fences snapshots. A new owner :func:`claim`-s it before it writes its
fence into the changelog, which moves ``claim`` on; an owner's snapshot is :func:`save`-d
only while the row still holds its claim. So an owner that was replaced, and learns it
late, can never save state that includes what it wrote after the new owner's fence: every
one of its records that a snapshot covers landed before its save, its save came before
the new claim, and the new claim before the new fence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sensors.faults import crash_point
from sensors.runs.store import RunStore
from sensors.runs.tables import dialect_insert, state_snapshots

__all__ = ["Claimed", "claim", "forget", "save"]


@dataclass(frozen=True)
class Claimed:
    """A partition claimed by a new owner: its claim, and the snapshot it starts from."""

    claim: int
    changelog_offset: int | None = None
    """The first changelog record the snapshot does not cover; None: no snapshot yet."""
    data: bytes | None = None
    keys: int = 0
    saved_at: datetime | None = None


async def claim(
    store: RunStore, topic: str, partitions: Iterable[int], owner: str
) -> dict[int, Claimed]:
    """Take changelog ``partitions`` of ``topic`` over for ``owner``, in one transaction: no
    snapshot of an earlier owner is saved from now on. Return each one's claim and latest
    snapshot."""
    t = state_snapshots.c
    claimed = {}
    async with store.connection(write=True) as conn:
        now = datetime.now(UTC)  # for people reading the table; nothing decides by it
        for partition in sorted(partitions):  # in one order: two claimers never deadlock
            insert = dialect_insert(conn)(state_snapshots).values(
                topic=topic, partition=partition, claim=1, owner=owner, claimed_at=now
            )
            upsert = insert.on_conflict_do_update(
                index_elements=[t.topic, t.partition],
                set_={"claim": t.claim + 1, "owner": owner, "claimed_at": now},
            ).returning(t.claim, t.changelog_offset, t.data, t.key_count, t.saved_at)
            row = (await conn.execute(upsert)).one()
            claimed[partition] = Claimed(
                row.claim, row.changelog_offset, row.data, row.key_count or 0, row.saved_at
            )
    return claimed


async def save(
    store: RunStore,
    topic: str,
    partition: int,
    claim: int,
    changelog_offset: int,
    data: bytes,
    keys: int,
) -> bool:
    """Save a snapshot that covers the changelog up to ``changelog_offset``, if ``claim`` is
    still the partition's (and no later snapshot was saved); return whether it was."""
    t = state_snapshots.c
    update = (
        state_snapshots.update()
        .where(
            t.topic == topic,
            t.partition == partition,
            t.claim == claim,
            (t.changelog_offset.is_(None)) | (t.changelog_offset <= changelog_offset),
        )
        .values(
            changelog_offset=changelog_offset, data=data, key_count=keys, saved_at=datetime.now(UTC)
        )
    )
    async with store.connection(write=True) as conn:
        result = await conn.execute(update)
        crash_point("snapshot.writing")  # before the commit
    return bool(result.rowcount)


async def forget(store: RunStore, topic: str, partition: int, claim: int) -> None:
    """Drop the snapshot of a changelog partition that the broker lost, while ``claim``
    is the partition's: its offsets mean nothing in the new log."""
    t = state_snapshots.c
    update = (
        state_snapshots.update()
        .where(t.topic == topic, t.partition == partition, t.claim == claim)
        .values(changelog_offset=None, data=None, key_count=None, saved_at=None)
    )
    async with store.connection(write=True) as conn:
        await conn.execute(update)

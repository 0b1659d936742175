"""Workers' heartbeats in the store: how any worker learns that one on another host stopped.

Every worker writes its heartbeat every ``TRIPWIRE_WORKER_HEARTBEAT`` seconds. One whose
heartbeat is older than :data:`MISSED_BEATS` beats is gone; the first live worker to see
it marks it so (compare-and-set), and every launcher then settles what it left
(:meth:`~sensors.launchers.base.Launcher.adopt`). A worker on the same host needs none of
this: it sees whether the process still runs. A name with no row is a worker from
before heartbeats, and is never taken for gone.

Every time here is the database's clock, read in the same transaction: the workers'
own clocks may differ, and one running ahead would take the others for gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sensors.runs.store import RunStore
from sensors.runs.tables import dialect_insert, workers

__all__ = ["MISSED_BEATS", "beat", "gone", "mark_gone"]

MISSED_BEATS = 6
"""Heartbeats a worker may miss (a long pause, a busy database) before it counts as gone."""
_FORGET = timedelta(days=7)  # rows of workers gone this long are deleted


async def beat(store: RunStore, name: str, host: str, started_at: datetime) -> datetime | None:
    """Write worker ``name``'s heartbeat now. Return when a live worker marked it gone, if
    one did since its last beat: its runs may have gone to others meanwhile."""
    async with store.connection(write=True) as conn:
        now = await _now(conn)
        marked = await conn.scalar(sa.select(workers.c.gone_at).where(workers.c.name == name))
        insert = dialect_insert(conn)(workers).values(
            name=name, host=host, started_at=started_at, heartbeat_at=now
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=[workers.c.name], set_={"heartbeat_at": now, "gone_at": None}
            )
        )
    return None if marked is None else _aware(marked)


async def mark_gone(store: RunStore, every: float) -> list[str]:
    """Mark gone the workers whose heartbeat is older than :data:`MISSED_BEATS` beats of
    ``every`` seconds; return those this call marked (another worker may have been first).
    Rows of workers gone for a week are deleted."""
    async with store.connection(write=True) as conn:
        now = await _now(conn)
        stale = now - timedelta(seconds=every * MISSED_BEATS)
        mark = (
            workers.update()
            .where(workers.c.gone_at.is_(None), workers.c.heartbeat_at < stale)
            .values(gone_at=now)
            .returning(workers.c.name)
        )
        marked = [row.name for row in await conn.execute(mark)]
        await conn.execute(workers.delete().where(workers.c.heartbeat_at < now - _FORGET))
    return marked


async def gone(store: RunStore, names: Iterable[str]) -> dict[str, datetime]:
    """Which of ``names`` a live worker marked gone (:func:`mark_gone`), with their last
    heartbeat. Only marks count: a worker marks others only while its own heartbeats go
    through, so an outage of the store makes nobody gone."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    query = sa.select(workers.c.name, workers.c.heartbeat_at).where(
        workers.c.name.in_(wanted), workers.c.gone_at.is_not(None)
    )
    async with store.connection() as conn:
        return {row.name: _aware(row.heartbeat_at) for row in await conn.execute(query)}


async def _now(conn: AsyncConnection) -> datetime:
    """The database's clock, in UTC."""
    now = await conn.scalar(sa.select(sa.func.current_timestamp(type_=_TIME)))
    assert now is not None  # CURRENT_TIMESTAMP always answers
    return _aware(now)


_TIME = sa.DateTime(timezone=True)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite drops the zone

"""Which run consumed each event of a sensor: the store's guarantee that two workers
deciding different run names from the same events (a replaced owner of a partition, an
older definition) still start one run."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from sensors.core.types import event_id
from sensors.runs.models import NewRun
from sensors.runs.tables import ROWS, consumed_events, dialect_insert
from triggers.errors import ConsumedError

__all__ = ["claim_all", "claim_consumed"]

_KEY_LENGTH = 255  # the column's; a longer event key (a long source) is stored as its hash


async def claim_consumed(conn: AsyncConnection, new: NewRun, now: datetime) -> None:
    """Record that run ``new`` consumed its events, in its transaction.

    One multi-row insert that skips claims which exist. Only when some were skipped,
    one query finds the runs that hold them, and any other run than ``new`` refuses it.

    Raises:
        ConsumedError: another run of the sensor consumed one of the events.
    """
    if new.sensor_id is None or not new.consumes:
        return
    claims = _claims(new, now)
    ids = [claim["event_id"] for claim in claims]
    scope = {"project": new.project, "domain": new.domain, "sensor_id": new.sensor_id}
    insert = dialect_insert(conn)(consumed_events).values(claims).on_conflict_do_nothing()
    if (await conn.execute(insert)).rowcount == len(ids):
        return
    held = (
        await conn.execute(
            sa.select(consumed_events.c.event_id, consumed_events.c.run_name)
            .where(*(consumed_events.c[k] == v for k, v in scope.items()))
            .where(consumed_events.c.event_id.in_(ids), consumed_events.c.run_name != new.name)
            .order_by(consumed_events.c.event_id)
        )
    ).all()
    if held:
        taken = ", ".join(f"{event_id(str(key))!r} by run {run!r}" for key, run in held)
        raise ConsumedError(
            f"sensor {new.sensor_id!r} in {new.project}/{new.domain}: run {new.name!r} was not "
            f"created, its events were consumed already ({taken}). It is a stale worker's or "
            "an older definition's decision from the same events; nothing needs doing."
        )


def claim_all(conn: Connection, news: Sequence[NewRun], now: datetime) -> None:
    """Record that each of ``news`` consumed its events, in their transaction: one insert.

    Raises:
        ConsumedError: some event was consumed already, by another run or by two of
            ``news``; the caller undoes the transaction and creates the runs one at a time
            (:func:`claim_consumed` says which run holds what).
    """
    claims = [claim for new in news if new.sensor_id is not None for claim in _claims(new, now)]
    insert = dialect_insert(conn)
    for start in range(0, len(claims), ROWS):
        chunk = claims[start : start + ROWS]
        statement = insert(consumed_events).values(chunk).on_conflict_do_nothing()
        if conn.execute(statement).rowcount != len(chunk):
            raise ConsumedError("some of these runs' events were consumed already")


def _claims(new: NewRun, now: datetime) -> list[dict[str, object]]:
    """The ``consumed_events`` rows of run ``new``: one per event it consumes, sorted (two
    transactions claiming overlapping ids lock them in one order, so on PostgreSQL the
    second waits for the first rather than deadlocking with it)."""
    return [
        {
            "project": new.project,
            "domain": new.domain,
            "sensor_id": new.sensor_id,
            "event_id": stored,
            "run_name": new.name,
            "created_at": now,
        }
        for stored in sorted({_stored(key) for key in new.consumes})
    ]


def _stored(key: str) -> str:
    if len(key) <= _KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

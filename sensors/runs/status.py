"""What sensors hold and what they filtered out, as the workers last reported it.

Workers write these every ``TRIPWIRE_SENSOR_STATUS_INTERVAL`` seconds; the
CLI (and later the API) read them, so `tripwire sensors status` can explain a
sensor from any terminal without talking to the workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sensors.runs.models import FilterCount, Hold, KeyProgress
from sensors.runs.store import RunStore, utc
from sensors.runs.tables import (
    dialect_insert,
    filter_counts,
    sensor_holds,
    sensor_progress,
)

__all__ = [
    "add_count",
    "add_filter_counts",
    "list_filter_counts",
    "list_holds",
    "list_progress",
    "replace_holds",
    "replace_progress",
]


_KEYS_PER_DELETE = 100  # (sensor, key) pairs in one DELETE, always this many (see below)


async def replace_holds(
    store: RunStore, project: str, domain: str, holds: Mapping[tuple[str, str], Iterable[Hold]]
) -> None:
    """Set what each (sensor, correlation key) holds; an empty list clears it."""
    rows = {key: [h.model_dump() for h in found] for key, found in holds.items()}
    await _replace_per_key(store, sensor_holds, project, domain, rows)


async def replace_progress(
    store: RunStore,
    project: str,
    domain: str,
    progress: Mapping[tuple[str, str], KeyProgress | None],
) -> None:
    """Set where each (sensor, correlation key) stands; None clears it."""
    rows = {key: [found.model_dump()] if found else [] for key, found in progress.items()}
    await _replace_per_key(store, sensor_progress, project, domain, rows)


async def _replace_per_key(
    store: RunStore,
    table: sa.Table,
    project: str,
    domain: str,
    rows: Mapping[tuple[str, str], list[dict[str, object]]],
) -> None:
    """Replace the rows of each (sensor, correlation key) of ``table`` in one transaction.

    A busy worker reports thousands of keys a second: the deletes go by the hundred and the
    inserts in one batch, so the transaction (SQLite's one write lock) stays short. Each
    DELETE names exactly ``_KEYS_PER_DELETE`` keys (the last one repeated), so that it is
    always the same statement: drivers keep prepared statements per connection, and one
    per length of the list (each with hundreds of parameters) grew a worker's memory by
    about 2 MB a minute in the soak (bench/soak.py)."""
    scope = {"project": project, "domain": domain, "updated_at": datetime.now(UTC)}
    keys = list(rows)
    inserts = [{**value, **scope} for values in rows.values() for value in values]
    async with store.engine.begin() as conn:
        for start in range(0, len(keys), _KEYS_PER_DELETE):
            chunk = keys[start : start + _KEYS_PER_DELETE]
            chunk += [chunk[-1]] * (_KEYS_PER_DELETE - len(chunk))
            await conn.execute(
                table.delete().where(
                    table.c.project == project,
                    table.c.domain == domain,
                    sa.tuple_(table.c.sensor_id, table.c.key).in_(chunk),
                )
            )
        if inserts:
            await conn.execute(table.insert(), inserts)


async def list_progress(
    store: RunStore, *, project: str, domain: str, sensor_id: str | None = None, limit: int = 1000
) -> list[KeyProgress]:
    query = (
        sa.select(sensor_progress)
        .where(sensor_progress.c.project == project, sensor_progress.c.domain == domain)
        .order_by(sensor_progress.c.sensor_id, sensor_progress.c.key)
        .limit(limit)
    )
    if sensor_id is not None:
        query = query.where(sensor_progress.c.sensor_id == sensor_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        KeyProgress.model_validate(
            {
                **r,
                "deadline": utc(r["deadline"]) if r["deadline"] else None,
                "debounce_until": utc(r["debounce_until"]) if r["debounce_until"] else None,
            }
        )
        for r in rows
    ]


async def list_holds(
    store: RunStore, *, project: str, domain: str, sensor_id: str | None = None, limit: int = 1000
) -> list[Hold]:
    query = (
        sa.select(sensor_holds)
        .where(sensor_holds.c.project == project, sensor_holds.c.domain == domain)
        .order_by(sensor_holds.c.sensor_id, sensor_holds.c.event_time.desc())
        .limit(limit)
    )
    if sensor_id is not None:
        query = query.where(sensor_holds.c.sensor_id == sensor_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        Hold.model_validate(
            {**r, "event_time": utc(r["event_time"]), "expires_at": utc(r["expires_at"])}
        )
        for r in rows
    ]


async def add_filter_counts(
    store: RunStore, project: str, domain: str, deltas: Iterable[FilterCount]
) -> None:
    """Add filtered-out counts (deltas since the last report) and keep the latest reason."""
    async with store.engine.begin() as conn:
        for delta in deltas:
            row = {"project": project, "domain": domain, **delta.model_dump()}
            await add_count(conn, filter_counts, ["project", "domain", "sensor_id", "dep"], row)


async def list_filter_counts(
    store: RunStore, *, project: str, domain: str, sensor_id: str | None = None
) -> list[FilterCount]:
    query = sa.select(filter_counts).where(
        filter_counts.c.project == project, filter_counts.c.domain == domain
    )
    if sensor_id is not None:
        query = query.where(filter_counts.c.sensor_id == sensor_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [FilterCount.model_validate({**r, "last_at": utc(r["last_at"])}) for r in rows]


async def add_count(
    conn: AsyncConnection, table: sa.Table, keys: Sequence[str], row: dict[str, Any]
) -> None:
    """Insert ``row``, or add its ``count`` to the row of the same ``keys`` and take its
    other columns (the latest of what is counted)."""
    statement = dialect_insert(conn)(table).values(**row)
    latest = {column: statement.excluded[column] for column in row if column not in keys}
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={**latest, "count": table.c.count + statement.excluded.count},
        )
    )

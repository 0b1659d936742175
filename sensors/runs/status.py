"""What sensors hold and what they filtered out, as the workers last reported it.

Workers write these every ``TRIPWIRE_SENSOR_STATUS_INTERVAL`` seconds; the
CLI (and later the API) read them, so `tripwire sensors status` can explain a
sensor from any terminal without talking to the workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import sqlalchemy as sa

from sensors.runs.models import FilterCount, Hold, KeyProgress
from sensors.runs.store import RunStore, dialect_insert, utc
from sensors.runs.tables import filter_counts, sensor_holds, sensor_progress

__all__ = [
    "add_filter_counts",
    "list_filter_counts",
    "list_holds",
    "list_progress",
    "replace_holds",
    "replace_progress",
]


async def replace_holds(
    store: RunStore, project: str, domain: str, holds: Mapping[tuple[str, str], Iterable[Hold]]
) -> None:
    """Set what each (sensor, correlation key) holds; an empty list clears it."""
    now = datetime.now(UTC)
    async with store.engine.begin() as conn:
        for (sensor_id, key), rows in holds.items():
            await conn.execute(
                sensor_holds.delete().where(
                    sensor_holds.c.project == project,
                    sensor_holds.c.domain == domain,
                    sensor_holds.c.sensor_id == sensor_id,
                    sensor_holds.c.key == key,
                )
            )
            values = [
                {**h.model_dump(), "project": project, "domain": domain, "updated_at": now}
                for h in rows
            ]
            if values:
                await conn.execute(sensor_holds.insert(), values)


async def replace_progress(
    store: RunStore,
    project: str,
    domain: str,
    progress: Mapping[tuple[str, str], KeyProgress | None],
) -> None:
    """Set where each (sensor, correlation key) stands; None clears it."""
    now = datetime.now(UTC)
    async with store.engine.begin() as conn:
        for (sensor_id, key), found in progress.items():
            await conn.execute(
                sensor_progress.delete().where(
                    sensor_progress.c.project == project,
                    sensor_progress.c.domain == domain,
                    sensor_progress.c.sensor_id == sensor_id,
                    sensor_progress.c.key == key,
                )
            )
            if found is not None:
                values = found.model_dump() | {"project": project, "domain": domain}
                await conn.execute(sensor_progress.insert().values(**values, updated_at=now))


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
        insert = dialect_insert(conn)
        for delta in deltas:
            statement = insert(filter_counts).values(
                project=project, domain=domain, **delta.model_dump()
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["project", "domain", "sensor_id", "dep"],
                    set_={
                        "count": filter_counts.c.count + statement.excluded.count,
                        "last_reason": statement.excluded.last_reason,
                        "last_event_id": statement.excluded.last_event_id,
                        "last_at": statement.excluded.last_at,
                    },
                )
            )


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

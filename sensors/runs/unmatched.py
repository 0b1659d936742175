"""Mapped parameters that matched nothing: what a run kept, and how often per sensor.

A run lists the mapped parameters that kept their defaults because their source matched
nothing in ``trigger_info["unmatched"]`` (:func:`sensors.core.types.make_fire`); the
emitter counts them per sensor here, with the last one, for `tripwire sensors status`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from sensors.runs.models import UnmatchedCount, UnmatchedMapping
from sensors.runs.status import add_count
from sensors.runs.store import RunStore, utc
from sensors.runs.tables import unmatched_mappings

__all__ = ["add_unmatched_counts", "kept_defaults", "list_unmatched_counts"]


def kept_defaults(trigger_info: dict[str, Any] | None) -> list[UnmatchedMapping]:
    """The mapped parameters a run (of this ``trigger_info``) kept the defaults of."""
    if not trigger_info or "unmatched" not in trigger_info:
        return []
    return [UnmatchedMapping.model_validate(u) for u in trigger_info["unmatched"]]


async def add_unmatched_counts(
    store: RunStore, project: str, domain: str, deltas: Iterable[UnmatchedCount]
) -> None:
    """Add counts (since the last call) and keep the latest mapping that matched nothing."""
    async with store.connection(write=True) as conn:
        for delta in deltas:
            row = {"project": project, "domain": domain, **delta.model_dump()}
            await add_count(conn, unmatched_mappings, ["project", "domain", "sensor_id"], row)


async def list_unmatched_counts(
    store: RunStore, *, project: str, domain: str, sensor_id: str | None = None
) -> list[UnmatchedCount]:
    table = unmatched_mappings
    query = sa.select(table).where(table.c.project == project, table.c.domain == domain)
    if sensor_id is not None:
        query = query.where(table.c.sensor_id == sensor_id)
    async with store.connection() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [UnmatchedCount.model_validate({**r, "last_at": utc(r["last_at"])}) for r in rows]

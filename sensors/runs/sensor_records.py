"""What the run store keeps per sensor: its deployment, its trigger failures, its newest run.

Companion of :mod:`sensors.runs.store`. The emitter and the scheduler record a
trigger failure when an event or a tick did not become a run; `tripwire sensors
list|status` read the rest (:mod:`sensors.queries.sensors`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from sensors.runs.models import DeployedSensor, RunRecord, TriggerFailure
from sensors.runs.store import RunStore, run_record, utc
from sensors.runs.tables import runs, sensors, trigger_failures

__all__ = [
    "last_runs_by_sensor",
    "list_sensors",
    "list_trigger_failures",
    "record_trigger_failure",
]


async def record_trigger_failure(store: RunStore, failure: TriggerFailure) -> None:
    """Record why an event did not become a run; once per sensor and event id."""
    try:
        async with store.connection(write=True) as conn:
            await conn.execute(trigger_failures.insert().values(**failure.model_dump()))
    except IntegrityError:
        pass  # a redelivered event: already recorded


async def list_trigger_failures(
    store: RunStore, *, sensor_id: str | None = None, limit: int = 100
) -> list[TriggerFailure]:
    query = (
        sa.select(trigger_failures)
        .order_by(trigger_failures.c.created_at.desc(), trigger_failures.c.id.desc())
        .limit(limit)
    )
    if sensor_id is not None:
        query = query.where(trigger_failures.c.sensor_id == sensor_id)
    async with store.connection() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [TriggerFailure.model_validate({**r, "created_at": utc(r["created_at"])}) for r in rows]


async def list_sensors(store: RunStore, *, project: str, domain: str) -> list[DeployedSensor]:
    query = (
        sa.select(sensors)
        .where(
            sensors.c.project == project,
            sensors.c.domain == domain,
            sensors.c.retired_at.is_(None),
        )
        .order_by(sensors.c.sensor_id)
    )
    async with store.connection() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        DeployedSensor.model_validate(
            {**r, "deployed_at": utc(r["deployed_at"]), "updated_at": utc(r["updated_at"])}
        )
        for r in rows
    ]


async def last_runs_by_sensor(store: RunStore) -> dict[str, RunRecord]:
    """The newest run of each sensor that has one."""
    newest = (
        sa.select(runs.c.sensor_id, sa.func.max(runs.c.id).label("id"))
        .where(runs.c.sensor_id.is_not(None))
        .group_by(runs.c.sensor_id)
        .subquery()
    )
    query = sa.select(runs).join(newest, runs.c.id == newest.c.id)
    async with store.connection() as conn:
        return {r["sensor_id"]: run_record(r) for r in (await conn.execute(query)).mappings()}

"""Per-trigger launch limits: ``rate_limit`` and ``max_concurrency``, across all workers.

A run of a limited trigger is claimed (QUEUED -> RUNNING) only while its trigger
has room: fewer than ``max_concurrency`` runs RUNNING or ABORTING, and fewer
than ``rate_limit_count`` started in the last ``rate_limit_seconds``. Otherwise
it stays QUEUED, and every worker's launcher looks again each second, oldest
first, so nothing is dropped and a crashed worker's queue is served by the
others. The count and the claim happen under a lock per trigger: a PostgreSQL
advisory lock (every worker), or a lock in this process on SQLite (which the
engine uses with one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa

from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from sensors.runs.tables import runs
from triggers.errors import IllegalTransitionError

__all__ = ["Waiting", "claim", "queued_counts", "waiting"]

_LIVE = (WorkflowPhase.RUNNING.value, WorkflowPhase.ABORTING.value)
_LOCKS: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


class Waiting(NamedTuple):
    """A QUEUED run as the starter looks at it: what decides whether it may start now."""

    id: int
    project: str
    domain: str
    name: str
    target: str
    sensor_id: str | None
    max_concurrency: int | None
    rate_limit_count: int | None
    rate_limit_seconds: float | None

    @property
    def key(self) -> tuple[str, str, str]:
        """(project, domain, name), as :attr:`RunRecord.key`."""
        return (self.project, self.domain, self.name)

    @property
    def limited(self) -> bool:
        """Whether its trigger limits how its runs start (runs by hand are not limited)."""
        return self.sensor_id is not None and (
            self.max_concurrency is not None or self.rate_limit_count is not None
        )


async def claim(
    store: RunStore, run: Waiting | RunRecord, now: datetime, worker: str
) -> RunRecord | None:
    """Claim a limited run for ``worker`` if its trigger has room; None if it must wait (or
    was claimed)."""
    where = (
        runs.c.project == run.project,
        runs.c.domain == run.domain,
        runs.c.sensor_id == run.sensor_id,
    )
    async with _exclusive(store, f"{run.project}\x1f{run.domain}\x1f{run.sensor_id}"):
        async with store.connection() as conn:
            if run.max_concurrency is not None:
                live = sa.select(sa.func.count()).where(*where, runs.c.phase.in_(_LIVE))
                if (await conn.scalar(live) or 0) >= run.max_concurrency:
                    return None
            if run.rate_limit_count is not None and run.rate_limit_seconds is not None:
                since = now - timedelta(seconds=run.rate_limit_seconds)
                started = sa.select(sa.func.count()).where(*where, runs.c.started_at >= since)
                if (await conn.scalar(started) or 0) >= run.rate_limit_count:
                    return None
        try:
            return await store.transition(
                run.project,
                run.domain,
                run.name,
                WorkflowPhase.RUNNING,
                expected=WorkflowPhase.QUEUED,
                claimed_by=worker,
            )
        except IllegalTransitionError:
            return None  # another worker claimed it first


async def waiting(store: RunStore, limit: int = 500) -> list[Waiting]:
    """The ``limit`` oldest QUEUED runs, oldest first: the order runs start in."""
    query = (
        sa.select(*(runs.c[field] for field in Waiting._fields))
        .where(runs.c.phase == WorkflowPhase.QUEUED.value)
        .order_by(runs.c.created_at, runs.c.id)
        .limit(limit)
    )
    async with store.connection() as conn:
        return [Waiting._make(row) for row in await conn.execute(query)]


async def queued_counts(store: RunStore, *, project: str, domain: str) -> dict[str, int]:
    """How many runs wait in QUEUED, per sensor."""
    query = (
        sa.select(runs.c.sensor_id, sa.func.count().label("count"))
        .where(
            runs.c.project == project,
            runs.c.domain == domain,
            runs.c.phase == WorkflowPhase.QUEUED.value,
            runs.c.sensor_id.is_not(None),
        )
        .group_by(runs.c.sensor_id)
    )
    async with store.connection() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return {str(r["sensor_id"]): int(r["count"]) for r in rows}


@contextlib.asynccontextmanager
async def _exclusive(store: RunStore, key: str) -> AsyncIterator[None]:
    if store.engine.dialect.name != "postgresql":
        async with _LOCKS[key]:
            yield
        return
    async with store.engine.connect() as conn:
        lock = sa.text("SELECT pg_advisory_lock(hashtextextended(:key, 0))")
        await conn.execute(lock, {"key": key})
        try:
            yield
        finally:
            unlock = sa.text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))")
            await conn.execute(unlock, {"key": key})

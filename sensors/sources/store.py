"""Event sources in the run store: deployed revisions, reported status, and leases.

Deploying works as for flows: the same declaration again changes nothing, a
changed one is revision n+1, and with ``prune`` a source missing from the
deployment is retired. Running processes poll :func:`sources_mark` and restart
what changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sensors.runs.deploy import against_races, deployment_mark, digest
from sensors.runs.store import RunStore, utc_row
from sensors.runs.tables import dialect_insert, live, named, source_leases, source_status, sources
from triggers.sources import EventSource

__all__ = [
    "SourceDeployment",
    "SourceStatus",
    "deploy_sources",
    "deployed_sources",
    "list_source_status",
    "report_status",
    "sources_mark",
    "take_lease",
    "release_lease",
]


@dataclass
class SourceDeployment:
    """What a deploy did to the sources, by name."""

    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceStatus:
    """One process's report on one source."""

    source: str
    instance: str
    revision: int
    state: str
    since: datetime
    messages_in: int
    events_out: int
    filtered: int
    dead_lettered: int
    last_error: str | None
    last_error_at: datetime | None
    updated_at: datetime


async def deploy_sources(
    store: RunStore,
    specs: Sequence[EventSource],
    *,
    project: str,
    domain: str,
    prune: bool = False,
) -> SourceDeployment:
    """Record ``specs`` as the current revisions of their sources, in one transaction."""
    return await against_races("sources", lambda: _deploy(store, specs, project, domain, prune))


async def _deploy(
    store: RunStore, specs: Sequence[EventSource], project: str, domain: str, prune: bool
) -> SourceDeployment:
    done = SourceDeployment()
    now = datetime.now(UTC)
    async with store.connection(write=True) as conn:
        current = {
            r.name: r
            for r in await conn.execute(
                sa.select(sources.c.name, sources.c.revision, sources.c.digest).where(
                    *live(sources, project, domain)
                )
            )
        }
        for spec in specs:
            old = current.get(spec.name)
            if old is not None and old.digest == digest(spec):
                done.unchanged.append(spec.name)
                continue
            if old is not None:
                await _retire(conn, project, domain, spec.name, now)
            await conn.execute(
                sources.insert().values(
                    project=project,
                    domain=domain,
                    name=spec.name,
                    revision=1 if old is None else old.revision + 1,
                    digest=digest(spec),
                    spec=spec.model_dump(mode="json", exclude_defaults=True),
                    deployed_at=now,
                )
            )
            (done.created if old is None else done.changed).append(spec.name)
        if prune:
            for name in sorted(set(current) - {spec.name for spec in specs}):
                await _retire(conn, project, domain, name, now)
                done.retired.append(name)
    return done


async def _retire(conn: Any, project: str, domain: str, name: str, at: datetime) -> None:
    await conn.execute(
        sources.update()
        .where(*named(sources, project, domain, name), sources.c.retired_at.is_(None))
        .values(retired_at=at)
    )


async def deployed_sources(
    store: RunStore, *, project: str, domain: str
) -> list[tuple[EventSource, int]]:
    """The current revision of each deployed source, as (spec, revision), by name."""
    query = (
        sa.select(sources.c.spec, sources.c.revision)
        .where(*live(sources, project, domain))
        .order_by(sources.c.name)
    )
    async with store.connection() as conn:
        rows = (await conn.execute(query)).all()
    return [(EventSource.model_validate(r.spec), r.revision) for r in rows]


async def sources_mark(store: RunStore, *, project: str, domain: str) -> tuple[Any, ...]:
    """Changes whenever a deploy changed a source of the project and domain."""
    return await deployment_mark(store, project=project, domain=domain, table=sources)


async def report_status(
    store: RunStore, project: str, domain: str, reports: Sequence[SourceStatus]
) -> None:
    """Write what this process's sources did (one row per source and process)."""
    if not reports:
        return
    async with store.connection(write=True) as conn:
        insert = dialect_insert(conn)(source_status)
        for report in reports:
            values = {"project": project, "domain": domain, **vars(report)}
            await conn.execute(
                insert.values(values).on_conflict_do_update(
                    index_elements=["project", "domain", "source", "instance"],
                    set_={k: v for k, v in values.items() if k not in ("project", "domain")},
                )
            )


async def list_source_status(
    store: RunStore, *, project: str, domain: str, keep: timedelta = timedelta(days=1)
) -> list[SourceStatus]:
    """The reports of the last ``keep``, by source and process; older ones are deleted."""
    cutoff = datetime.now(UTC) - keep
    scope = (source_status.c.project == project, source_status.c.domain == domain)
    async with store.connection(write=True) as conn:
        await conn.execute(
            source_status.delete().where(*scope, source_status.c.updated_at < cutoff)
        )
        rows = (
            await conn.execute(
                sa.select(source_status)
                .where(*scope)
                .order_by(source_status.c.source, source_status.c.instance)
            )
        ).all()
    found = []
    for row in rows:
        data = utc_row(row._mapping)
        del data["project"], data["domain"]
        found.append(SourceStatus(**data))
    return found


async def take_lease(
    store: RunStore, project: str, domain: str, source: str, holder: str, ttl: float
) -> bool:
    """Take or renew the lease on ``source`` for ``ttl`` seconds; False if another holds it."""
    now = datetime.now(UTC)
    until = now + timedelta(seconds=ttl)
    async with store.connection(write=True) as conn:
        insert = dialect_insert(conn)(source_leases).values(
            project=project, domain=domain, source=source, holder=holder, expires_at=until
        )
        await conn.execute(insert.on_conflict_do_nothing())
        taken = await conn.execute(
            source_leases.update()
            .where(
                source_leases.c.project == project,
                source_leases.c.domain == domain,
                source_leases.c.source == source,
                sa.or_(source_leases.c.holder == holder, source_leases.c.expires_at < now),
            )
            .values(holder=holder, expires_at=until)
        )
    return bool(taken.rowcount)


async def release_lease(
    store: RunStore, project: str, domain: str, source: str, holder: str
) -> None:
    """Give the lease up, so another process takes the source at once."""
    async with store.connection(write=True) as conn:
        await conn.execute(
            source_leases.delete().where(
                source_leases.c.project == project,
                source_leases.c.domain == domain,
                source_leases.c.source == source,
                source_leases.c.holder == holder,
            )
        )

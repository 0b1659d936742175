"""Deploying flows: revisions of flows and their triggers in the run store, in one transaction.

A deploy compares each flow with its current revision. The same content changes
nothing; a change adds revision n+1 and retires n; with ``prune``, deployed flows
missing from the deployment are retired (``tripwire dev`` serves exactly its
paths). A trigger keeps the time of its first deployment while it stays the
same, so a restarted or added worker counts exactly the events the first one
did; a changed or new trigger counts events from the deploy that changed it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from sensors.core.sensor import Sensor, build_sensors
from sensors.runs.models import Project
from sensors.runs.store import RunStore, utc
from sensors.runs.tables import dialect_insert, flows, live, named, projects, sensors
from triggers.errors import ConfigurationError, DeclarationError, RunNotFoundError, StoreError
from triggers.spec import EventDependency, FlowSpec, TriggerSpec, finished_event

__all__ = [
    "Deployment",
    "against_races",
    "create_project",
    "current_flows",
    "deploy",
    "deployed_sensors",
    "digest",
    "check_finish_cycles",
    "deployment_mark",
    "flow_revision",
    "list_projects",
    "validate_name",
]

_RACES = 5
T = TypeVar("T")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def validate_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid project or domain name, else raise saying why."""
    if not _NAME.match(value):
        raise ConfigurationError(
            f"invalid {what} name {value!r}; use lowercase letters, digits and '-', at most 63 "
            "characters, starting and ending with a letter or digit (e.g. 'data-platform')."
        )
    return value


@dataclass
class Deployment:
    """What a deploy did, by flow name."""

    project: str
    domain: str
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    revisions: dict[str, int] = field(default_factory=dict)
    # Event sources deployed alongside: created/changed/unchanged/retired -> names.
    sources: dict[str, list[str]] = field(default_factory=dict)


def digest(spec: BaseModel) -> str:
    """What a deploy compares a declaration by: a hash of its JSON."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


async def against_races(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()`` (a deploy in one transaction), again while another process's deploy
    of the same ``what`` collides with it on a unique key."""
    for _ in range(_RACES):
        try:
            return await attempt()
        except IntegrityError:
            continue  # another process deployed the same just now: compare again
    raise StoreError(f"{what} kept changing while deploying them; try again.")


async def deploy(
    store: RunStore,
    specs: Sequence[FlowSpec],
    *,
    project: str,
    domain: str,
    prune: bool = False,
) -> Deployment:
    """Register ``specs`` and their triggers in one transaction; see the module docs.

    Raises:
        ConfigurationError: the project or domain name is invalid.
    """
    validate_name(project, "project")
    validate_name(domain, "domain")
    return await against_races(
        "flows", lambda: _deploy(store, specs, project=project, domain=domain, prune=prune)
    )


async def _deploy(
    store: RunStore, specs: Sequence[FlowSpec], *, project: str, domain: str, prune: bool
) -> Deployment:
    done = Deployment(project, domain)
    now = datetime.now(UTC)
    async with store.connection(write=True) as conn:
        await _ensure_project(conn, project, "", now)
        current = {spec.name: (spec, rev) for spec, rev in await _current(conn, project, domain)}
        for spec in specs:
            old = current.get(spec.name)
            if old is not None and digest(old[0]) == digest(spec):
                done.unchanged.append(spec.name)
                done.revisions[spec.name] = old[1]
                continue
            revision = 1 if old is None else old[1] + 1
            if old is not None:
                await _retire_flow(conn, project, domain, spec.name, now)
            await conn.execute(
                flows.insert().values(
                    project=project,
                    domain=domain,
                    name=spec.name,
                    revision=revision,
                    digest=digest(spec),
                    spec=spec.model_dump(mode="json"),
                    deployed_at=now,
                )
            )
            await _deploy_triggers(
                conn, spec, old[0] if old else None, revision, project, domain, now
            )
            (done.created if old is None else done.changed).append(spec.name)
            done.revisions[spec.name] = revision
        final = {name: spec for name, (spec, _) in current.items()}
        final |= {spec.name: spec for spec in specs}
        if prune:
            final = {spec.name: spec for spec in specs}
        check_finish_cycles(final.values())
        if prune:
            wanted = {spec.name for spec in specs}
            for name in sorted(set(current) - wanted):
                await _retire_flow(conn, project, domain, name, now)
                await _retire_triggers(conn, project, domain, name, keep=(), at=now)
                done.retired.append(name)
    return done


async def create_project(store: RunStore, name: str, description: str = "") -> tuple[Project, bool]:
    """Create a project; return it and whether this call created it.

    Raises:
        ConfigurationError: the name is invalid.
    """
    validate_name(name, "project")
    now = datetime.now(UTC)
    async with store.connection(write=True) as conn:
        created = await _ensure_project(conn, name, description, now)
        row = (await conn.execute(sa.select(projects).where(projects.c.name == name))).one()
    return Project.model_validate({**row._mapping, "created_at": utc(row.created_at)}), created


async def list_projects(store: RunStore) -> list[Project]:
    """Projects, by name: those created and those deployed to."""
    async with store.connection() as conn:
        rows = (await conn.execute(sa.select(projects).order_by(projects.c.name))).all()
    return [Project.model_validate({**r._mapping, "created_at": utc(r.created_at)}) for r in rows]


async def _ensure_project(conn: AsyncConnection, name: str, description: str, at: datetime) -> bool:
    insert = dialect_insert(conn)(projects).values(
        name=name, description=description, created_at=at
    )
    result = await conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
    return bool(result.rowcount)


async def current_flows(
    store: RunStore, *, project: str, domain: str
) -> list[tuple[FlowSpec, int]]:
    """The current revision of each deployed flow, as (spec, revision), by name."""
    async with store.connection() as conn:
        return await _current(conn, project, domain)


async def deployment_mark(
    store: RunStore, *, project: str, domain: str, table: sa.Table = flows
) -> tuple[Any, ...]:
    """Changes whenever a deploy to the project and domain changed anything in ``table``
    (flows, or sources): cheap to poll."""
    query = sa.select(
        sa.func.count(), sa.func.max(table.c.deployed_at), sa.func.max(table.c.retired_at)
    ).where(table.c.project == project, table.c.domain == domain)
    async with store.connection() as conn:
        return tuple((await conn.execute(query)).one())


async def flow_revision(
    store: RunStore, name: str, *, project: str, domain: str, revision: int | None = None
) -> tuple[FlowSpec, int]:
    """A deployed flow: its current revision, or the given one (retired or not).

    Raises:
        RunNotFoundError: no such flow or revision is deployed in the project and domain.
    """
    query = sa.select(flows.c.spec, flows.c.revision).where(*named(flows, project, domain, name))
    if revision is None:
        query = query.where(flows.c.retired_at.is_(None))
    else:
        query = query.where(flows.c.revision == revision)
    async with store.connection() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        which = f" revision {revision}" if revision is not None else ""
        raise RunNotFoundError(
            f"no flow {name!r}{which} is deployed in {project}/{domain}; deploy it with "
            "`tripwire deploy PATH`, or list what is deployed with `tripwire sensors list`."
        )
    return FlowSpec.model_validate(row.spec), row.revision


async def deployed_sensors(store: RunStore, *, project: str, domain: str) -> list[Sensor]:
    """The sensors of the current flows, each with the deployment time of its trigger."""
    specs = [spec for spec, _ in await current_flows(store, project=project, domain=domain)]
    query = sa.select(sensors.c.sensor_id, sensors.c.deployed_at, sensors.c.revision).where(
        sensors.c.project == project,
        sensors.c.domain == domain,
        sensors.c.retired_at.is_(None),
    )
    async with store.connection() as conn:
        rows = {r.sensor_id: r for r in await conn.execute(query)}
    built = build_sensors(specs, project=project, domain=domain, deployed_at=datetime.now(UTC))
    deployed = []
    for sensor in built:
        row = rows.get(sensor.id)
        if row is not None:
            sensor = dataclasses.replace(
                sensor,
                deployed_at=utc(row.deployed_at) or sensor.deployed_at,
                revision=row.revision,
            )
        deployed.append(sensor)
    return deployed


async def _current(conn: AsyncConnection, project: str, domain: str) -> list[tuple[FlowSpec, int]]:
    query = (
        sa.select(flows.c.spec, flows.c.revision)
        .where(*live(flows, project, domain))
        .order_by(flows.c.name)
    )
    return [(FlowSpec.model_validate(r.spec), r.revision) for r in await conn.execute(query)]


async def _retire_flow(
    conn: AsyncConnection, project: str, domain: str, name: str, at: datetime
) -> None:
    await conn.execute(
        flows.update()
        .where(*named(flows, project, domain, name), flows.c.retired_at.is_(None))
        .values(retired_at=at)
    )


async def _deploy_triggers(
    conn: AsyncConnection,
    spec: FlowSpec,
    old: FlowSpec | None,
    revision: int,
    project: str,
    domain: str,
    now: datetime,
) -> None:
    """Upsert the flow's triggers: an unchanged one keeps its deployment time."""
    before = {t.name: t for t in (old.triggers if old else ())}
    for trig in spec.triggers:
        sensor_id = f"{spec.name}.{trig.name}"
        key = {"project": project, "domain": domain, "sensor_id": sensor_id}
        values: dict[str, Any] = {
            "flow": spec.name,
            "trigger": trig.name,
            "dependencies": [_dependency(d) for d in trig.dependencies],
            "within_seconds": trig.within.total_seconds(),
            "conditions": trig.conditions,
            "correlate_by": trig.correlate_by,
            "schedule": trig.schedule.model_dump(mode="json") if trig.schedule else None,
            "options": trigger_options(trig),
            "updated_at": now,
            "retired_at": None,
        }
        if before.get(trig.name) != trig:
            values |= {"deployed_at": now, "revision": revision}
        insert = dialect_insert(conn)(sensors).values(
            **key, **{"deployed_at": now, "revision": revision, **values}
        )
        await conn.execute(insert.on_conflict_do_update(index_elements=list(key), set_=values))
    await _retire_triggers(
        conn, project, domain, spec.name, keep=[t.name for t in spec.triggers], at=now
    )


async def _retire_triggers(
    conn: AsyncConnection,
    project: str,
    domain: str,
    flow: str,
    *,
    keep: Iterable[str],
    at: datetime,
) -> None:
    await conn.execute(
        sensors.update()
        .where(
            sensors.c.project == project,
            sensors.c.domain == domain,
            sensors.c.flow == flow,
            sensors.c.trigger.not_in(list(keep)),
            sensors.c.retired_at.is_(None),
        )
        .values(retired_at=at)
    )


def check_finish_cycles(specs: Iterable[FlowSpec]) -> None:
    """Refuse flows that trigger each other on finish in a cycle (they would run forever).

    Raises:
        DeclarationError: naming the cycle.
    """
    prefix = finished_event("")
    after: dict[str, list[str]] = {
        spec.name: [
            dep.name.removeprefix(prefix)
            for trig in spec.triggers
            for dep in trig.dependencies
            if dep.name.startswith(prefix)
        ]
        for spec in specs
    }
    done: set[str] = set()

    def visit(flow: str, path: list[str]) -> None:
        if flow in path:
            cycle = [*path[path.index(flow) :], flow]
            raise DeclarationError(
                "trigger_on_finish cycle: " + " -> ".join(reversed(cycle)) + " (each flow "
                "runs when the one before it finishes, forever); remove one of these triggers."
            )
        if flow in done:
            return
        for upstream in after.get(flow, ()):
            visit(upstream, [*path, flow])
        done.add(flow)

    for flow in after:
        visit(flow, [])


def trigger_options(trig: TriggerSpec) -> dict[str, Any] | None:
    """What a trigger sets beyond all-of: threshold, sequence, absence, debounce, limits."""
    options = trig.model_dump(
        mode="json",
        include={"threshold", "sequence", "absence", "max_concurrency"},
        exclude_defaults=True,
    )
    if trig.debounce is not None:
        options["debounce"] = trig.debounce.total_seconds()
    if trig.rate_limit is not None:
        options["rate_limit"] = trig.rate_limit.describe()
    return options or None


def _dependency(dep: EventDependency) -> dict[str, Any]:
    shown: dict[str, Any] = {"dep": dep.dep, "name": dep.name}
    if dep.filters:
        shown["filters"] = [f.model_dump(mode="json") for f in dep.filters]
        shown["filters_operator"] = dep.filters_operator
    return shown

"""What the sensor stage saw in the last hour: counts by the minute, and marks per sensor.

The sensor stage counts the events it reads by (CloudEvent source, event name) and the
events it offers to each (sensor, dependency), per minute, and marks the last event that
each batch offered to, or filtered out of, each (sensor, dependency), with the reason
(:class:`sensors.stages.activity.Activity`). Its reporter adds them here. The event-flow
graph reads the counts as rates (:func:`event_counts`, :func:`offer_counts`); the sensor
page (``/sensors/{id}``) reads the marks and its counts as its timeline. The reporter
deletes, once a minute, what is older than :data:`KEPT` and all but the newest
:data:`MARKS_PER_SENSOR` marks of each sensor it marked (:func:`prune_activity`).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sensors.runs.store import RunStore, utc
from sensors.runs.tables import activity_events, activity_marks, activity_offers, dialect_insert

__all__ = [
    "FILTERED",
    "KEPT",
    "MARKS_PER_SENSOR",
    "OFFERED",
    "TIMELINE",
    "WINDOW_MINUTES",
    "ActivityMark",
    "MinuteCounts",
    "add_activity",
    "event_counts",
    "list_marks",
    "minute_of",
    "offer_counts",
    "offers_by_minute",
    "prune_activity",
]

WINDOW_MINUTES = 15  # the graph's rate window
TIMELINE = timedelta(hours=1)  # what the sensor page shows
KEPT = TIMELINE + timedelta(minutes=10)  # and a margin: workers' clocks, a page read mid-prune
MARKS_PER_SENSOR = 200

OFFERED: Final = "offered"
FILTERED: Final = "filtered"

MinuteCounts = Mapping[tuple[datetime, str, str], int]
"""Counts by (minute, and two names): (source, event name), or (sensor id, dependency)."""

_SENSORS_PER_DELETE = 100  # sensors in one capping DELETE, always this many (see status.py)


class ActivityMark(NamedTuple):
    """An event offered to a sensor's dependency, or filtered out by it, on the timeline.

    The sensor stage marks the last event of each batch it routed to the dependency: a
    busy dependency gets a mark per batch, not per event (its counts are per minute).
    """

    sensor_id: str
    dep: str
    kind: Literal["offered", "filtered"]
    event_id: str
    reason: str | None  # why it was filtered out; None for an offered event
    at: datetime  # when the sensor stage routed it


def minute_of(at: datetime) -> datetime:
    """The minute ``at`` falls in: the bucket it is counted in."""
    return at.replace(second=0, microsecond=0)


async def add_activity(
    store: RunStore,
    project: str,
    domain: str,
    *,
    events: MinuteCounts,
    offers: MinuteCounts,
    marks: Sequence[ActivityMark],
) -> None:
    """Add counts (deltas since the last call) and the newest :data:`MARKS_PER_SENSOR` of
    ``marks`` (oldest first) of each sensor, in one transaction.

    Counts are added in the order of their keys, so that two workers adding to the same
    rows of PostgreSQL lock them in one order and never deadlock on them."""
    kept = _newest_per_sensor(marks)
    async with store.connection(write=True) as conn:
        await _add_counts(conn, activity_events, ("source", "name"), project, domain, events)
        await _add_counts(conn, activity_offers, ("sensor_id", "dep"), project, domain, offers)
        if kept:
            scope = {"project": project, "domain": domain}
            cut = _length(activity_marks.c.event_id)
            rows = [{**scope, **m._asdict(), "event_id": m.event_id[:cut]} for m in kept]
            await conn.execute(activity_marks.insert(), rows)


async def _add_counts(
    conn: AsyncConnection,
    table: sa.Table,
    names: tuple[str, str],
    project: str,
    domain: str,
    counts: MinuteCounts,
) -> None:
    if not counts:
        return
    first, second = (_length(table.c[name]) for name in names)
    # Merged once cut: two long names that share their start are one row, and PostgreSQL
    # refuses an upsert that would write one row twice.
    cut: collections.Counter[tuple[datetime, str, str]] = collections.Counter()
    for (minute, a, b), n in counts.items():
        cut[minute, a[:first], b[:second]] += n
    rows = [
        {"project": project, "domain": domain, "minute": at, names[0]: a, names[1]: b, "count": n}
        for (at, a, b), n in sorted(cut.items())
    ]
    insert = dialect_insert(conn)(table)
    upsert = insert.on_conflict_do_update(
        index_elements=["project", "domain", "minute", *names],
        set_={"count": table.c["count"] + insert.excluded["count"]},
    )
    await conn.execute(upsert, rows)


def _length(column: sa.Column[Any]) -> int | None:
    """The longest string ``column`` holds: a longer one (an event's id, its source) is cut,
    since PostgreSQL would refuse it, and with it the whole report."""
    return column.type.length if isinstance(column.type, sa.String) else None


def _newest_per_sensor(marks: Sequence[ActivityMark]) -> list[ActivityMark]:
    """The newest :data:`MARKS_PER_SENSOR` of ``marks`` (oldest first) for each sensor."""
    seen: dict[str, int] = {}
    kept = []
    for mark in reversed(marks):
        n = seen.get(mark.sensor_id, 0)
        if n < MARKS_PER_SENSOR:
            seen[mark.sensor_id] = n + 1
            kept.append(mark)
    kept.reverse()
    return kept


async def _cap_marks(conn: AsyncConnection, project: str, domain: str, sensors: list[str]) -> None:
    """Delete all but the newest :data:`MARKS_PER_SENSOR` marks of each of ``sensors``.

    Each DELETE names exactly ``_SENSORS_PER_DELETE`` sensors (the last one repeated), so
    that it is always the same statement (see ``_replace_per_key`` in status.py)."""
    t = activity_marks
    for start in range(0, len(sensors), _SENSORS_PER_DELETE):
        chunk = sensors[start : start + _SENSORS_PER_DELETE]
        chunk += [chunk[-1]] * (_SENSORS_PER_DELETE - len(chunk))
        newest_first = (t.c.at.desc(), t.c.id.desc())
        ranked = (
            sa.select(
                t.c.id,
                sa.func.row_number()
                .over(partition_by=t.c.sensor_id, order_by=newest_first)
                .label("n"),
            )
            .where(t.c.project == project, t.c.domain == domain, t.c.sensor_id.in_(chunk))
            .subquery()
        )
        over = sa.select(ranked.c.id).where(ranked.c.n > MARKS_PER_SENSOR)
        await conn.execute(t.delete().where(t.c.id.in_(over)))


async def prune_activity(
    store: RunStore, project: str, domain: str, before: datetime, capped: Sequence[str] = ()
) -> None:
    """Delete the counts of the minutes before ``before``'s and the marks before it, and all
    but the newest :data:`MARKS_PER_SENSOR` marks of each sensor in ``capped``."""
    minute = minute_of(before)
    async with store.connection(write=True) as conn:
        for table in (activity_events, activity_offers):
            await conn.execute(
                table.delete().where(
                    table.c.project == project, table.c.domain == domain, table.c.minute < minute
                )
            )
        t = activity_marks
        await conn.execute(
            t.delete().where(t.c.project == project, t.c.domain == domain, t.c.at < before)
        )
        await _cap_marks(conn, project, domain, sorted(capped))


async def event_counts(
    store: RunStore, *, project: str, domain: str, since: datetime
) -> dict[tuple[str, str], int]:
    """Events seen by the sensor stage since `since`, by (CloudEvent source, event name).

    Counted by the minute: the minute ``since`` falls in counts whole."""
    t = activity_events
    return await _sums(store, t, (t.c.source, t.c.name), project, domain, since)


async def offer_counts(
    store: RunStore, *, project: str, domain: str, since: datetime
) -> dict[tuple[str, str], int]:
    """Events offered to each dependency since `since` (filtered ones not counted), by
    (sensor_id, dep).

    Counted by the minute: the minute ``since`` falls in counts whole."""
    t = activity_offers
    return await _sums(store, t, (t.c.sensor_id, t.c.dep), project, domain, since)


async def _sums(
    store: RunStore,
    table: sa.Table,
    by: tuple[Any, Any],
    project: str,
    domain: str,
    since: datetime,
) -> dict[tuple[str, str], int]:
    query = (
        sa.select(*by, sa.func.sum(table.c["count"]).label("total"))
        .where(
            table.c.project == project,
            table.c.domain == domain,
            table.c.minute >= minute_of(since),
        )
        .group_by(*by)
    )
    async with store.connection() as conn:
        rows = (await conn.execute(query)).all()
    return {(r[0], r[1]): int(r.total) for r in rows}


async def offers_by_minute(
    store: RunStore, *, project: str, domain: str, sensor_id: str, since: datetime
) -> dict[str, dict[datetime, int]]:
    """Events offered to each dependency of one sensor, per minute since ``since``'s."""
    t = activity_offers
    query = sa.select(t.c.dep, t.c.minute, t.c["count"]).where(
        t.c.project == project,
        t.c.domain == domain,
        t.c.sensor_id == sensor_id,
        t.c.minute >= minute_of(since),
    )
    async with store.connection() as conn:
        rows = (await conn.execute(query)).mappings().all()
    found: dict[str, dict[datetime, int]] = {}
    for r in rows:
        found.setdefault(r["dep"], {})[utc(r["minute"])] = int(r["count"])
    return found


async def list_marks(
    store: RunStore, *, project: str, domain: str, sensor_id: str, since: datetime
) -> list[ActivityMark]:
    """The newest :data:`MARKS_PER_SENSOR` marks of one sensor since ``since``, oldest first."""
    t = activity_marks
    query = (
        sa.select(t.c.sensor_id, t.c.dep, t.c.kind, t.c.event_id, t.c.reason, t.c.at)
        .where(
            t.c.project == project,
            t.c.domain == domain,
            t.c.sensor_id == sensor_id,
            t.c.at >= since,
        )
        .order_by(t.c.at.desc(), t.c.id.desc())
        .limit(MARKS_PER_SENSOR)
    )
    async with store.connection() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [ActivityMark(**{**r, "at": utc(r["at"])}) for r in reversed(rows)]

"""Whether what the web pages show has changed: a few maxima and counts, in one statement.

The live pages (:mod:`sensors.api.live`) read :func:`change_marks` once a second for all the
pages open on a server, and refresh a page when a mark it follows moves. Each mark is an
indexed maximum or a count over a small table, so a read costs the same however many runs
the store keeps: runs are followed through their phase changes (``run_phases``, whose
primary key grows with every change of a run or of an attempt), not through
``runs.updated_at``, which has no index.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sensors.runs.store import RunStore
from sensors.runs.tables import (
    activity_marks,
    filter_counts,
    flow_import_problems,
    run_phases,
    run_signals,
    sensor_holds,
    sensor_progress,
    sensors,
    trigger_failures,
    unmatched_mappings,
)

__all__ = ["STORE_TOPICS", "change_marks"]

STORE_TOPICS = ("runs", "sensors")
"""What the marks are grouped by: a page follows the topics it shows."""


def _marks(project: str, domain: str) -> dict[str, list[Any]]:
    """Per topic, the scalar subqueries whose values move when the topic changes: of the
    project and domain's rows, or ``everywhere`` where an indexed maximum answers at once
    (another project's change then refreshes a page for nothing, which is harmless)."""

    def one(value: Any, table: sa.FromClause, everywhere: bool = False, *where: Any) -> Any:
        scope = () if everywhere else (table.c.project == project, table.c.domain == domain)
        return sa.select(value).select_from(table).where(*scope, *where).scalar_subquery()

    def count(table: sa.Table, *where: Any) -> Any:
        return one(sa.func.count(), table, False, *where)

    def newest(column: sa.Column[Any], everywhere: bool = False) -> Any:
        return one(sa.func.max(column), column.table, everywhere)

    return {
        # Every phase change of a run or of an attempt, and every wait and signal.
        "runs": [newest(run_phases.c.id, everywhere=True), newest(run_signals.c.updated_at)],
        "sensors": [
            count(sensors, sensors.c.retired_at.is_(None)),
            newest(sensors.c.updated_at),
            # Holds and progress rows are deleted when a key empties: counts see that.
            count(sensor_holds),
            newest(sensor_holds.c.updated_at),
            count(sensor_progress),
            newest(sensor_progress.c.updated_at),
            newest(filter_counts.c.last_at),
            newest(trigger_failures.c.id, everywhere=True),
            newest(unmatched_mappings.c.last_at),
            count(flow_import_problems),
            newest(flow_import_problems.c.seen_at),
            newest(activity_marks.c.id, everywhere=True),
        ],
    }


async def change_marks(store: RunStore, *, project: str, domain: str) -> dict[str, tuple[str, ...]]:
    """Per topic of :data:`STORE_TOPICS`, values that differ from the last read's whenever
    what the pages show of it changed (as text, so that they compare and hash alike on
    SQLite and PostgreSQL)."""
    marks = _marks(project, domain)
    columns = [column for topic in STORE_TOPICS for column in marks[topic]]
    async with store.connection() as conn:
        row = (await conn.execute(sa.select(*columns))).one()
    values = iter(row)
    return {topic: tuple(str(next(values)) for _ in marks[topic]) for topic in STORE_TOPICS}

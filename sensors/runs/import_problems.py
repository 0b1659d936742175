"""The flow files that failed to import, kept in the store until they are fixed.

``tripwire dev`` records what each load of its flow files found (:func:`record_import_problems`),
so that the web page and ``tripwire sensors list``, in any process, show them as Airflow
shows its DAG import errors. (``deploy`` and ``worker`` refuse such files instead.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sensors.runs.store import RunStore, utc
from sensors.runs.tables import flow_import_problems

__all__ = ["ImportProblem", "import_problems", "record_import_problems"]


@dataclass(frozen=True)
class ImportProblem:
    """A flow file that raised while it was imported."""

    path: str
    """The file, as the user named it (relative to the current folder when under it)."""
    line: int | None
    """The line in that file where it failed (of the user's own frame), when known."""
    error: str
    """One line: the exception's type once, and its message."""
    traceback: str
    """The whole traceback."""
    seen_at: datetime
    where: str = ""
    """The user's own frame when it is in another of their files (``lib/cfg.py:9``), and the
    source line that raised; empty when there is nothing to add."""

    def short(self) -> str:
        """``flows/bad.py:3: KeyError: 'API_KEY' (TOKEN = os.environ["API_KEY"])``."""
        at = f"{self.path}:{self.line}" if self.line else self.path
        # A declaration error names its file and line itself.
        text = self.error if self.error.startswith(f"{self.path}:") else f"{at}: {self.error}"
        return f"{text} ({self.where})" if self.where else text


async def record_import_problems(
    store: RunStore, problems: Sequence[ImportProblem], *, project: str, domain: str
) -> None:
    """Make ``problems`` the import problems of ``project``/``domain``: those of files that
    now import are gone."""
    scope = (flow_import_problems.c.project == project) & (flow_import_problems.c.domain == domain)
    async with store.connection(write=True) as conn:
        await conn.execute(flow_import_problems.delete().where(scope))
        if problems:
            await conn.execute(
                flow_import_problems.insert(),
                [
                    {
                        "project": project,
                        "domain": domain,
                        "path": p.path,
                        "line": p.line,
                        "error": p.error,
                        "traceback": p.traceback,
                        "seen_at": p.seen_at,
                        "where": p.where,
                    }
                    for p in {p.path: p for p in problems}.values()
                ],
            )


async def import_problems(store: RunStore, *, project: str, domain: str) -> list[ImportProblem]:
    """The import problems recorded for ``project``/``domain``, by path."""
    t = flow_import_problems.c
    query = (
        sa.select(flow_import_problems)
        .where(t.project == project, t.domain == domain)
        .order_by(t.path)
    )
    async with store.connection() as conn:
        rows = (await conn.execute(query)).all()
    return [
        ImportProblem(
            path=row.path,
            line=row.line,
            error=row.error,
            traceback=row.traceback,
            seen_at=utc(row.seen_at),
            where=row.where or "",
        )
        for row in rows
    ]

"""A run as the API, the web page and the CLI show it: its attempts, history and logs.

Plain queries that return data; :mod:`sensors.cli.render` and the web templates lay it out.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from sensors.launchers.base import REMOTE_FAMILIES, family_of, scheme_of
from sensors.launchers.process import run_dir
from sensors.runs import history as runs_history
from sensors.runs.models import Attempt, PhaseChange, RunRecord, UnmatchedMapping
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore, run_record
from sensors.runs.tables import flows, live, runs
from sensors.runs.unmatched import kept_defaults
from triggers.errors import DeclarationError
from triggers.normalize import did_you_mean
from triggers.settings import get_settings
from triggers.spec import parse_duration

__all__ = [
    "MAX_PAGE",
    "PAGE_SIZE",
    "RunDetail",
    "RunKey",
    "RunPage",
    "RunQuery",
    "TaskLog",
    "flow_names",
    "parse_run_query",
    "parse_since",
    "run_detail",
    "run_logs",
    "runs_page",
]

PAGE_SIZE = 50
"""Runs on a page of the runs list when the query names no ``limit``."""
MAX_PAGE = 500


class TaskLog(BaseModel):
    """Where a run's log is (Flyte's TaskLog): a name and a URI."""

    name: str
    uri: str


class RunDetail(BaseModel):
    """A run with its attempts and phase history, as `tripwire runs get` shows it."""

    run: RunRecord
    attempts: list[Attempt]
    history: list[PhaseChange]
    logs: list[TaskLog] = Field(default_factory=list, description="Where its logs are.")

    @property
    def unmatched(self) -> list[UnmatchedMapping]:
        """The mapped parameters that kept their defaults because their source matched
        nothing (kept in the run's ``trigger_info``, which the JSON carries)."""
        return kept_defaults(self.run.trigger_info)


def run_logs(run: RunRecord, attempts: Sequence[Attempt] = ()) -> list[TaskLog]:
    """Where a run's logs are: the run folder's log for the targets a worker runs itself,
    the Job's pods or the Workflow in the cluster, or each attempt's page in the system
    that ran it (Prefect, Airflow, Dagster, Flyte)."""
    scheme = scheme_of(run.target)
    if scheme == "k8s":
        return [TaskLog(name="Kubernetes Job", uri=f"{run.target.rstrip('/')}/jobs/{run.name}")]
    if scheme == "argo":
        namespace = run.target.split("/")[2]
        return [TaskLog(name="Argo Workflow", uri=f"argo://{namespace}/workflows/{run.name}")]
    if family_of(run.target) in REMOTE_FAMILIES:
        return [
            TaskLog(name=f"{scheme} run of attempt {a.number}", uri=a.link)
            for a in attempts
            if a.link
        ]
    path = run_dir(get_settings(), run.name) / "run.log"
    return [TaskLog(name="run.log", uri=path.as_uri())]


async def run_detail(store: RunStore, name: str, *, project: str, domain: str) -> RunDetail:
    run = await store.get_run(name, project=project, domain=domain)
    attempts = await runs_history.attempts(store, run.project, run.domain, run.name)
    return RunDetail(
        run=run,
        attempts=attempts,
        history=await runs_history.history(store, run.project, run.domain, run.name),
        logs=run_logs(run, attempts),
    )


def parse_since(text: str, now: datetime) -> datetime:
    """``2026-11-23T08:00:00Z`` or a duration back from now (``90m``, ``1d``), in UTC: SQLite
    keeps times as UTC text without their offset, and compares a bound as text.

    Raises:
        ValueError: neither; the message shows both forms.
    """
    try:
        moment: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    try:
        if moment is None:
            try:
                back = parse_duration(text, what="since")
            except DeclarationError:
                raise ValueError(
                    f"{text!r} is neither an ISO 8601 time (2026-11-23T08:00:00Z) nor a "
                    "duration back from now (90m, 1d)"
                ) from None
            return (now - back).astimezone(UTC)
        return (moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)).astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{text!r} is out of range: the time it names must fall in the years 1 to 9999"
        ) from None


# The runs list (``/runs``): filters, and pages by a keyset cursor.


@dataclass(frozen=True)
class RunKey:
    """Where a run stands in the runs list, newest first: by creation, then by name (a
    name is unique in its project and domain, so no two runs share a key)."""

    created_at: datetime
    name: str

    @classmethod
    def of(cls, run: RunRecord) -> RunKey:
        return cls(run.created_at, run.name)

    def token(self) -> str:
        """The key as a cursor for a URL."""
        text = f"{self.created_at.astimezone(UTC).isoformat()} {self.name}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str, what: str) -> RunKey:
        """Raises: ValueError: ``token`` is not a cursor that :meth:`token` made."""
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            moment, name = text.split(" ", 1)
            at = datetime.fromisoformat(moment)
            at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
        except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
            raise ValueError(
                f"{what}={token!r} is not a cursor of the runs list; follow the list's own "
                "newer and older links, or leave it out for the newest runs"
            ) from None
        return cls(at, name)


@dataclass(frozen=True)
class RunQuery:
    """What the runs list shows: runs of any of ``flows`` in any of ``phases``, created
    in [``after``, ``before``), ``limit`` of them, older than ``older`` or newer than
    ``newer`` (the cursors of the list's links)."""

    flows: tuple[str, ...] = ()
    phases: tuple[WorkflowPhase, ...] = ()
    after: datetime | None = None
    before: datetime | None = None
    limit: int = PAGE_SIZE
    older: RunKey | None = None
    newer: RunKey | None = None
    given: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    """The filters as they were written (``after=1h`` stays relative), for the links."""

    def link(self, **cursor: RunKey) -> str:
        """The URL of the list with these filters, at ``older=KEY`` or ``newer=KEY``."""
        params = [*self.given, *((k, key.token()) for k, key in cursor.items())]
        return f"/runs?{urlencode(params)}" if params else "/runs"


_FILTERS = ("flow", "phase", "after", "before", "limit")
_CURSORS = ("older", "newer")
_PHASES = [p.value for p in WorkflowPhase if p != WorkflowPhase.UNDEFINED]
_TIMES = "an ISO 8601 time (2026-11-23T08:00:00Z) or a duration back from now (90m, 24h, 7d)"


def parse_run_query(params: Iterable[tuple[str, str]], now: datetime) -> RunQuery:
    """The runs list's query parameters as a :class:`RunQuery`; an empty value counts as
    not given (a form sends its empty fields). ``flow`` and ``phase`` may repeat, or
    list several values with commas.

    Raises:
        ValueError: a parameter or value the list does not know; the message names it
            and says what the list takes.
    """
    found: dict[str, list[str]] = {}
    for name, value in params:
        if name not in (*_FILTERS, *_CURSORS):
            raise ValueError(
                f"the runs list has no filter {name!r}{did_you_mean(name, _FILTERS)}; "
                f"filter with {', '.join(_FILTERS)}"
            )
        found.setdefault(name, []).extend(v.strip() for v in value.split(",") if v.strip())
    given = tuple((k, ",".join(found[k])) for k in _FILTERS if found.get(k))
    query = RunQuery(
        flows=tuple(dict.fromkeys(found.get("flow", []))),
        phases=tuple(dict.fromkeys(_phase(p) for p in found.get("phase", []))),
        after=_moment(found, "after", now),
        before=_moment(found, "before", now),
        limit=_limit(found.get("limit")),
        older=_cursor(found, "older"),
        newer=_cursor(found, "newer"),
        given=given,
    )
    if query.older and query.newer:
        raise ValueError("give older or newer, not both: each is a cursor of the runs list")
    return query


def _phase(text: str) -> WorkflowPhase:
    upper = text.upper()
    if upper not in _PHASES:
        raise ValueError(
            f"phase={text!r} is not a run phase{did_you_mean(upper, _PHASES)}; "
            f"the phases are {', '.join(_PHASES)}"
        )
    return WorkflowPhase(upper)


def _moment(found: dict[str, list[str]], name: str, now: datetime) -> datetime | None:
    values = found.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f"{name} is given {len(values)} times ({', '.join(values)}); give it once")
    try:
        # A + typed into the address bar arrives as a space: 08:00:00 02:00 is 08:00:00+02:00.
        return parse_since(re.sub(r" (\d\d:?\d\d)$", r"+\1", values[0]), now)
    except ValueError:
        raise ValueError(f"{name}={values[0]!r} is not a time; write {_TIMES}") from None


def _limit(values: list[str] | None) -> int:
    if not values:
        return PAGE_SIZE
    text = values[-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise ValueError(
            f"limit={text!r} is not a number of runs; write a whole number from 1 to {MAX_PAGE} "
            f"(the default is {PAGE_SIZE})"
        )
    return int(text)


def _cursor(found: dict[str, list[str]], name: str) -> RunKey | None:
    values = found.get(name)
    return RunKey.from_token(values[-1], name) if values else None


@dataclass(frozen=True)
class RunPage:
    """A page of the runs list, newest first, with the cursors of its neighbours: ``newer``
    when newer runs match the query, ``older`` when older ones do."""

    runs: list[RunRecord]
    newer: RunKey | None
    older: RunKey | None


async def runs_page(store: RunStore, query: RunQuery, *, project: str, domain: str) -> RunPage:
    """The runs of ``project``/``domain`` that ``query`` picks (one page of them)."""
    where = _where(query, project, domain)
    ascending = query.newer is not None
    statement = sa.select(runs).where(*where)
    if query.newer is not None:
        statement = statement.where(_beyond(query.newer, newer=True))
    if query.older is not None:
        statement = statement.where(_beyond(query.older, newer=False))
    order = (runs.c.created_at, runs.c.name)
    statement = statement.order_by(*(c.asc() if ascending else c.desc() for c in order)).limit(
        query.limit + 1
    )
    async with store.connection() as conn:
        found = [run_record(r) for r in (await conn.execute(statement)).mappings()]
        more = len(found) > query.limit
        page = found[: query.limit]
        if ascending:
            page.reverse()
        if not page:
            return RunPage([], None, None)
        newest, oldest = RunKey.of(page[0]), RunKey.of(page[-1])
        if ascending:
            newer, older = more, await _any(conn, [*where, _beyond(oldest, newer=False)])
        else:
            older = more
            newer = query.older is not None and await _any(
                conn, [*where, _beyond(newest, newer=True)]
            )
    return RunPage(page, newest if newer else None, oldest if older else None)


def _where(query: RunQuery, project: str, domain: str) -> list[Any]:
    where: list[Any] = [runs.c.project == project, runs.c.domain == domain]
    if query.flows:
        where.append(runs.c.flow.in_(query.flows))
    if query.phases:
        where.append(runs.c.phase.in_([p.value for p in query.phases]))
    if query.after is not None:
        where.append(runs.c.created_at >= query.after)
    if query.before is not None:
        where.append(runs.c.created_at < query.before)
    return where


def _beyond(key: RunKey, *, newer: bool) -> Any:
    """The runs after ``key`` in the list's order (older ones), or before it (newer)."""
    at = key.created_at.astimezone(UTC)
    if newer:
        later = sa.and_(runs.c.created_at == at, runs.c.name > key.name)
        return sa.or_(runs.c.created_at > at, later)
    earlier = sa.and_(runs.c.created_at == at, runs.c.name < key.name)
    return sa.or_(runs.c.created_at < at, earlier)


async def _any(conn: AsyncConnection, where: list[Any]) -> bool:
    return (await conn.execute(sa.select(runs.c.id).where(*where).limit(1))).first() is not None


async def flow_names(store: RunStore, *, project: str, domain: str) -> list[str]:
    """The flows deployed in ``project``/``domain``, by name."""
    query = sa.select(flows.c.name).where(*live(flows, project, domain)).order_by(flows.c.name)
    async with store.connection() as conn:
        return list((await conn.execute(query)).scalars())

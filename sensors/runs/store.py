"""The run store: SQLite (embedded default) or PostgreSQL, through SQLAlchemy 2 async.

Three guarantees the engine builds on:

- ``create_run`` accepts a run name once per project and domain (a unique key),
  so replays, redeliveries and racing workers never create a second run;
- ``create_run`` lets each event of a sensor be consumed by one run only (the run's
  ``consumes``, claimed in its transaction), so two workers that decide different names
  from the same events (a stale partition owner, an older definition) still start one;
- ``transition`` is a compare-and-set on the phase, so two writers can never
  both move a run out of the same phase;
- the schema is migrated with alembic on open, under a PostgreSQL advisory lock
  (a file lock for SQLite) so that workers starting together do not race.

Driver failures surface as StoreError naming the URL (password hidden) and what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sensors.runs.consumed import claim_consumed
from sensors.runs.migrate import upgrade_schema
from sensors.runs.models import NewRun, RunError, RunRecord
from sensors.runs.outages import shown_url, store_error
from sensors.runs.phases import (
    WorkflowPhase,
    can_move,
    check_transition,
    is_terminal,
)
from sensors.runs.tables import (
    named,
    phase_change,
    phase_row,
    runs,
)
from sensors.runs.together import GroupCommit, Transaction, Write, write_all
from triggers.errors import (
    ConfigurationError,
    IllegalTransitionError,
    RunNotFoundError,
    StoreError,
    StoreUnavailableError,
)

__all__ = ["RunStore", "queued_row", "run_record", "utc", "utc_row"]

log = logging.getLogger(__name__)
T = TypeVar("T")

CAS_ATTEMPTS = 20


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    # SQLite gives naive datetimes back; everything the store writes is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class RunStore:
    """Runs in one SQL database, which the companion modules of sensors.runs share."""

    def __init__(self, engine: AsyncEngine, url: str, writer: Engine | None = None) -> None:
        self._engine = engine
        self.url = url
        # SQLite lets one connection write at a time, and one that finds another writing
        # sleeps and tries again (busy_timeout), for milliseconds at a time: this process's
        # writers take turns here instead. PostgreSQL writes rows, not the file, in parallel.
        self._writing = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._writes: GroupCommit[Write[Any], Any] = GroupCommit(self._write_many)
        # SQLite through aiosqlite hops to a thread and back for every call of a statement,
        # and each hop waits its turn in a busy event loop. The batches of `together` go to
        # this synchronous engine's thread in one hop instead (a file's database only).
        self._writer = writer
        self._writer_thread = (
            ThreadPoolExecutor(1, thread_name_prefix="tripwire-store") if writer else None
        )

    @property
    def sqlite(self) -> bool:
        """Whether the store is SQLite, whose writers take turns (one file, one writer)."""
        return self._writing is not None

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> RunStore:
        """Connect to ``url`` and bring its schema up to date.

        Raises:
            ConfigurationError: the URL is not one of SQLite or PostgreSQL, with its driver.
            StoreError: the database cannot be reached or migrated; the message names
                the URL (password hidden) and what to check.
        """
        try:
            parsed = make_url(url)
            supported = parsed.get_backend_name() in ("sqlite", "postgresql")
        except ArgumentError:
            supported = False
        if not supported or parsed.get_driver_name() not in ("aiosqlite", "asyncpg"):
            raise ConfigurationError(
                f"the run store's URL {shown_url(url)!r} (TRIPWIRE_DATABASE_URL) is not one "
                "tripwire can use; write sqlite+aiosqlite:///PATH or "
                "postgresql+asyncpg://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            )
        shown = shown_url(url)
        options: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30}
        else:
            options["pool_pre_ping"] = True
        engine = create_async_engine(url, **options)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        writer = None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            writer = create_engine(
                parsed.set(drivername="sqlite+pysqlite"),
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            event.listen(writer, "connect", _sqlite_pragmas)
        store = cls(engine, shown, writer)
        if migrate:
            try:
                await upgrade_schema(engine, parsed)
            except (SQLAlchemyError, OSError) as exc:
                await engine.dispose()
                raise store_error(f"cannot open the run store at {shown}", exc) from exc
        return store

    async def together(self, write: Write[T]) -> T:
        """Run ``write`` in a transaction with the writes other callers ask for meanwhile
        (:class:`~sensors.runs.together.GroupCommit`), and return its answer.

        ``write`` gets the :class:`Transaction`: its connection, and the phase changes to
        record at its end. A batch in which a write raises is undone, and each of its writes
        is tried again alone, so that a write at fault fails its own caller only; an outage
        of the store fails them all. For the store's companion modules.
        """
        answer: T = await self._writes(write)
        return answer

    async def _write_many(self, writes: list[Write[Any]]) -> list[Any]:
        try:
            return await self._write_in_one(writes)
        except StoreUnavailableError:
            raise
        except Exception:
            if len(writes) == 1:
                raise
        answers: list[Any] = []
        for write in writes:  # one at a time, so that the write at fault fails alone
            try:
                answers += await self._write_in_one([write])
            except Exception as exc:
                answers.append(exc)
        return answers

    async def _write_in_one(self, writes: list[Write[Any]]) -> list[Any]:
        if self._writer is None or self._writer_thread is None or self._writing is None:
            async with self.connection(write=True) as conn:
                return await conn.run_sync(write_all, writes)
        async with self._writing:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._writer_thread, self._write_here, writes)

    def _write_here(self, writes: list[Write[Any]]) -> list[Any]:
        """The writer thread's part: the whole transaction, with no hop back."""
        assert self._writer is not None
        try:
            with self._writer.begin() as conn:
                return write_all(conn, writes)
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise store_error(f"the run store at {self.url} failed", exc) from exc

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine, for the store's companion modules (sensors.runs.status)."""
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()
        if self._writer is not None and self._writer_thread is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._writer_thread, self._writer.dispose
            )
            self._writer_thread.shutdown(wait=False)

    async def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        async with self.connection() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def __aenter__(self) -> RunStore:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def connection(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection (a transaction when ``write``); driver failures become StoreError.

        Public for the store's companion modules (deploy, status)."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                if write and self._writing is not None:
                    await stack.enter_async_context(self._writing)
                conn = await stack.enter_async_context(
                    self._engine.begin() if write else self._engine.connect()
                )
                yield conn
        except IntegrityError:
            raise  # a constraint said no: an answer for the caller, not an outage
        except (SQLAlchemyError, OSError) as exc:
            raise store_error(f"the run store at {self.url} failed", exc) from exc

    # runs

    async def create_run(self, new: NewRun) -> tuple[RunRecord, bool]:
        """Create ``new`` as QUEUED; return the run and whether this call created it.

        An existing name returns the existing run, whatever it consumed. A new run
        claims the events it consumes in the same transaction.

        Raises:
            ConsumedError: another run of its sensor consumed one of those events;
                nothing was written.
        """
        now = datetime.now(UTC)
        row = queued_row(new, now)
        try:
            async with self.connection(write=True) as conn:
                # The run first: its unique name is the only IntegrityError here, since
                # the claims insert skips conflicts and looks at them itself.
                await conn.execute(runs.insert().values(**row))
                await conn.execute(phase_change(new, None, WorkflowPhase.QUEUED, now))
                await claim_consumed(conn, new, now)
        except IntegrityError:
            return await self.get_run(new.name, project=new.project, domain=new.domain), False
        return run_record(row), True

    async def get_run(
        self, name: str, project: str | None = None, domain: str | None = None
    ) -> RunRecord:
        """The run named ``name``.

        Raises:
            RunNotFoundError: no such run.
            StoreError: without project and domain, the name exists in several.
        """
        query = sa.select(runs).where(runs.c.name == name)
        if project is not None:
            query = query.where(runs.c.project == project)
        if domain is not None:
            query = query.where(runs.c.domain == domain)
        async with self.connection() as conn:
            rows = (await conn.execute(query)).mappings().all()
        if not rows:
            where = f" in {project or '*'}/{domain or '*'}" if project or domain else ""
            raise RunNotFoundError(
                f"no run named {name!r}{where}; list runs with `tripwire runs list`."
            )
        if len(rows) > 1:
            places = ", ".join(f"{r['project']}/{r['domain']}" for r in rows)
            raise StoreError(f"run {name!r} exists in {places}; give the project and domain.")
        return run_record(rows[0])

    async def list_runs(
        self,
        *,
        project: str | None = None,
        domain: str | None = None,
        flow: str | None = None,
        phase: WorkflowPhase | Sequence[WorkflowPhase] | None = None,
        sensor_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs matching every filter given (``since``: created at or after), newest first."""
        query = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        given = {"project": project, "domain": domain, "flow": flow, "sensor_id": sensor_id}
        query = query.where(*(runs.c[k] == v for k, v in given.items() if v is not None))
        if phase is not None:
            phases = [phase] if isinstance(phase, WorkflowPhase) else list(phase)
            query = query.where(runs.c.phase.in_([p.value for p in phases]))
        if since is not None:
            query = query.where(runs.c.created_at >= since)
        async with self.connection() as conn:
            return [run_record(r) for r in (await conn.execute(query)).mappings()]

    async def transition(
        self,
        project: str,
        domain: str,
        name: str,
        phase: WorkflowPhase,
        *,
        expected: WorkflowPhase | None = None,
        error: RunError | None = None,
        pid: int | None = None,
        abort_cause: str | None = None,
        claimed_by: str | None = None,
        outputs: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Move a run to ``phase`` (compare-and-set) and return it as updated.

        Every move is kept in the run's history, in the same transaction: that history
        is also the outbox of lifecycle events (:mod:`sensors.stages.lifecycle_relay`).

        ``expected`` makes the move conditional on the current phase: a claim, by the
        worker named in ``claimed_by``.

        Raises:
            IllegalTransitionError: the move is not allowed from the run's phase, or the
                run is not in ``expected``.
            RunNotFoundError: no such run.
        """
        given = {
            "error": error,
            "pid": pid,
            "abort_cause": abort_cause,
            "claimed_by": claimed_by,
            "outputs": outputs,
        }
        sources = [p.value for p in _SOURCES[phase] if expected is None or p == expected]
        for _ in range(CAS_ATTEMPTS):
            moved = await self._move(project, domain, name, phase, sources, given)
            if moved is not None:
                return moved
            # It was in no phase it may move from: read it, to say why.
            current = await self.get_run(name, project=project, domain=domain)
            if expected is not None and current.phase != expected:
                raise IllegalTransitionError(
                    f"run {name!r} is {current.phase}, not {expected}; another worker moved it."
                )
            try:
                check_transition(current.phase, phase)
            except IllegalTransitionError as exc:
                log.warning("run %s/%s/%s: refused: %s", project, domain, name, exc)
                raise
            if phase == current.phase:
                if is_terminal(phase):
                    return current  # a repeated final word (redelivery, retry): the first stands
                same = await self._move(project, domain, name, phase, [phase.value], given)
                if same is not None:
                    return same
            # Otherwise it moved in between: try again.
        raise StoreError(f"run {name!r} kept changing under us; try again.")

    async def _move(
        self,
        project: str,
        domain: str,
        name: str,
        phase: WorkflowPhase,
        sources: list[str],
        given: dict[str, Any],
    ) -> RunRecord | None:
        """Move the run to ``phase`` in one statement, with no read before it, if it is in
        one of ``sources`` (phases, as stored), and return it as updated; None if it was not,
        and nothing was written. A move to another phase records the phase change, and one
        to a final phase ends the run's waits. Moves that callers ask for at once are written
        together (:meth:`together`)."""
        if not sources:
            return None

        def write(transaction: Transaction) -> RunRecord | None:
            now = datetime.now(UTC)
            update = (
                runs.update()
                .where(*named(runs, project, domain, name), runs.c.phase.in_(sources))
                .values(**_moved(phase, given, now))
                .returning(*runs.c)
            )
            row = transaction.conn.execute(update).mappings().first()
            if row is None:
                return None
            run = run_record(row)
            if sources != [phase.value]:  # not a write within its phase: a phase change
                transaction.phases.append(phase_row(run, None, phase, now, given["error"]))
            if is_terminal(phase):
                transaction.ended.append((run, phase))
            return run

        return await self.together(write)

    async def request_abort(
        self, project: str, domain: str, name: str, cause: str
    ) -> tuple[RunRecord, bool]:
        """Abort a run: a QUEUED one at once, a running one through ABORTING (its worker
        then stops its process). Return the run and whether this call changed it; a run
        that is final or already aborting is left as it is."""
        for _ in range(CAS_ATTEMPTS):
            run = await self.get_run(name, project=project, domain=domain)
            if is_terminal(run.phase) or run.phase == WorkflowPhase.ABORTING:
                return run, False
            phase = (
                WorkflowPhase.ABORTED
                if run.phase in (WorkflowPhase.UNDEFINED, WorkflowPhase.QUEUED)
                else WorkflowPhase.ABORTING
            )
            try:
                moved = await self.transition(
                    project, domain, name, phase, expected=run.phase, abort_cause=cause
                )
            except IllegalTransitionError:
                continue  # it moved on meanwhile: look again
            return moved, True
        raise StoreError(f"run {name!r} kept changing under us; try again.")


def _moved(phase: WorkflowPhase, given: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a move to ``phase`` writes to the run's row; ``given`` holds the error, pid,
    abort cause, claimer and outputs the caller gave (None where it gave none)."""
    values: dict[str, Any] = {"phase": phase.value, "updated_at": now}
    if phase == WorkflowPhase.RUNNING:
        values["started_at"] = sa.func.coalesce(runs.c.started_at, now)
    if is_terminal(phase):
        values["finished_at"] = now
        values["pid"] = None
    if given["error"] is not None:
        values["error"] = given["error"].model_dump(mode="json")
    for key in ("pid", "abort_cause", "claimed_by", "outputs"):
        if given[key] is not None:
            values[key] = given[key]
    return values


# The phases a run may move to each phase from (a move to its own phase is not among them).
_SOURCES = {
    phase: [p for p in WorkflowPhase if p != phase and can_move(p, phase)]
    for phase in WorkflowPhase
}


def utc_row(row: Any) -> dict[str, Any]:
    """A row as a dict, its datetimes in UTC (SQLite returns them naive)."""
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def queued_row(new: NewRun, now: datetime) -> dict[str, Any]:
    """The ``runs`` row of a run admitted now, QUEUED (its claims are kept apart)."""
    return {
        **new.model_dump(exclude={"consumes"}),
        "phase": WorkflowPhase.QUEUED.value,
        "created_at": now,
        "updated_at": now,
    }


def run_record(row: Any) -> RunRecord:
    """A ``runs`` row as a RunRecord, its datetimes in UTC."""
    data = dict(row)
    data.pop("id", None)
    for key in ("created_at", "updated_at", "started_at", "finished_at", "scheduled_at"):
        data[key] = utc(data.get(key))
    return RunRecord.model_validate(data)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI read while the engine writes; busy_timeout waits out brief locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

"""Attempts of runs and their phase history, which is also the lifecycle event outbox.

Companion of :mod:`sensors.runs.store`: an attempt (Flyte's TaskExecution) is
one try at a run; every phase change of a run or attempt is a history row,
written in the transaction that makes the change, and published from there by
:mod:`sensors.stages.lifecycle_relay`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from sensors.runs.models import Attempt, PhaseChange, RunError, RunRecord
from sensors.runs.phases import TERMINAL_ATTEMPT_PHASES, AttemptPhase
from sensors.runs.store import RunStore, run_record, utc_row
from sensors.runs.tables import (
    RunRef,
    named,
    phase_change,
    phase_row,
    run_attempts,
    run_phases,
    run_ref,
    runs,
)
from sensors.runs.together import Transaction
from triggers.errors import ClaimLostError, IllegalTransitionError, RunNotFoundError

__all__ = [
    "adopt_attempt",
    "attempts",
    "finish_attempt",
    "heartbeat",
    "move_attempt",
    "history",
    "mark_published",
    "relay_changes",
    "runs_of",
    "start_attempt",
    "take_claim",
    "take_retry",
    "unpublished_changes",
]

_RUN_KEY = ("project", "domain", "name")


def _trace_of_change(column: str) -> Any:
    """The trace context (``column``) a change's lifecycle event carries: its attempt span's,
    for a change of an attempt that has one; else its run's (see ``_CHANGES``)."""
    return sa.case(
        (run_attempts.c.traceparent.is_not(None), run_attempts.c[column]),
        else_=runs.c[column],
    ).label(column)


# A change with the trace context its lifecycle event carries: joined to its run and, for
# an attempt's change, to its attempt (outer joins: a change goes out whatever they hold).
_CHANGES = sa.select(
    run_phases, _trace_of_change("traceparent"), _trace_of_change("tracestate")
).select_from(
    run_phases.outerjoin(
        runs, sa.and_(*(getattr(runs.c, k) == getattr(run_phases.c, k) for k in _RUN_KEY))
    ).outerjoin(
        run_attempts,
        sa.and_(
            *(getattr(run_attempts.c, k) == getattr(run_phases.c, k) for k in _RUN_KEY),
            run_attempts.c.number == run_phases.c.attempt,
        ),
    )
)

_LIVE_ATTEMPT = (
    AttemptPhase.INITIALIZING,
    AttemptPhase.WAITING_FOR_RESOURCES,
    AttemptPhase.RUNNING,
)


async def start_attempt(
    store: RunStore,
    project: str,
    domain: str,
    name: str,
    *,
    pid: int | None,
    worker: str,
    phase: AttemptPhase = AttemptPhase.RUNNING,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Attempt:
    """Record the run's next attempt as ``phase`` (RUNNING, or INITIALIZING for a target that
    must first schedule it), with the trace context of its span if it has one, and return it.

    With no read before it: the run's count of attempts goes up by one in the statement
    that says which number this attempt has. Attempts that start at once are recorded
    together (:meth:`RunStore.together`).

    Fenced: only the worker that holds the run's claim (``claimed_by``; none, for a run
    from before claims) begins its attempts. A worker the others took for gone learns here
    that its runs went to another one.

    Raises:
        RunNotFoundError: no such run.
        ClaimLostError: another worker holds the run's claim.
    """

    def write(transaction: Transaction) -> Attempt:
        now = datetime.now(UTC)
        count = (
            runs.update()
            .where(
                *named(runs, project, domain, name),
                runs.c.claimed_by.is_(None) | (runs.c.claimed_by == worker),
            )
            .values(attempts=runs.c.attempts + 1, pid=pid, updated_at=now)
            .returning(runs.c.attempts, runs.c.flow)
        )
        row = transaction.conn.execute(count).first()
        if row is None:
            raise _not_begun(transaction, project, domain, name, worker)
        attempt = Attempt(
            project=project,
            domain=domain,
            name=name,
            number=row.attempts,
            phase=phase,
            started_at=now,
            updated_at=now,
            pid=pid,
            worker=worker,
            traceparent=traceparent,
            tracestate=tracestate,
        )
        transaction.attempts.append(attempt.model_dump())
        run = RunRef(project, domain, name, row.flow)
        transaction.phases.append(phase_row(run, attempt.number, phase, now))
        return attempt

    return await store.together(write)


def _not_begun(
    transaction: Transaction, project: str, domain: str, name: str, worker: str
) -> ClaimLostError | RunNotFoundError:
    """Why ``worker`` could not begin an attempt of the run: another worker's claim, or no run."""
    owner = transaction.conn.execute(
        sa.select(runs.c.claimed_by).where(*named(runs, project, domain, name))
    ).first()
    if owner is None:
        return RunNotFoundError(
            f"no run named {name!r} in {project}/{domain}; list runs with `tripwire runs list`."
        )
    return ClaimLostError(
        f"run {name!r} was taken over by worker {owner.claimed_by} while the others took this "
        f"worker ({worker}) for gone; it leaves the run to that worker. Check why its "
        "heartbeats stopped (a long pause, or the run store out of its reach)."
    )


async def finish_attempt(
    store: RunStore,
    project: str,
    domain: str,
    name: str,
    number: int,
    phase: AttemptPhase,
    error: RunError | None = None,
) -> bool:
    """Move a running attempt to a final ``phase``; False if it had one already. Attempts
    that end at once are recorded together (:meth:`RunStore.together`)."""
    if phase not in TERMINAL_ATTEMPT_PHASES:
        raise IllegalTransitionError(f"an attempt cannot finish as {phase}")

    def write(transaction: Transaction) -> bool:
        now = datetime.now(UTC)
        update = (
            run_attempts.update()
            .where(
                *named(run_attempts, project, domain, name),
                run_attempts.c.number == number,
                run_attempts.c.phase.in_([p.value for p in _LIVE_ATTEMPT]),
            )
            .values(
                phase=phase.value,
                finished_at=now,
                updated_at=now,
                error=error.model_dump(mode="json") if error else None,
            )
        )
        if transaction.conn.execute(update).rowcount != 1:
            return False
        run = run_ref(project, domain, name)
        transaction.phases.append(phase_row(run, number, phase, now, error))
        return True

    return await store.together(write)


async def move_attempt(
    store: RunStore, project: str, domain: str, name: str, number: int, phase: AttemptPhase
) -> bool:
    """Move a live attempt to another live ``phase`` (INITIALIZING, WAITING_FOR_RESOURCES,
    RUNNING), as its target reports it; False if it is there already or has ended."""
    if phase not in _LIVE_ATTEMPT:
        raise IllegalTransitionError(f"an attempt cannot move to {phase}; finish it instead")
    now = datetime.now(UTC)
    update = (
        run_attempts.update()
        .where(
            *named(run_attempts, project, domain, name),
            run_attempts.c.number == number,
            run_attempts.c.phase.in_([p.value for p in _LIVE_ATTEMPT if p != phase]),
        )
        .values(phase=phase.value, updated_at=now)
    )
    async with store.connection(write=True) as conn:
        if (await conn.execute(update)).rowcount != 1:
            return False
        await conn.execute(phase_change(run_ref(project, domain, name), number, phase, now))
    return True


async def heartbeat(
    store: RunStore, project: str, domain: str, name: str, number: int, worker: str
) -> bool:
    """Mark a live attempt as still watched by ``worker``; False if another took it over."""
    update = (
        run_attempts.update()
        .where(
            *named(run_attempts, project, domain, name),
            run_attempts.c.number == number,
            run_attempts.c.worker == worker,
            run_attempts.c.phase.in_([p.value for p in _LIVE_ATTEMPT]),
        )
        .values(updated_at=datetime.now(UTC))
    )
    async with store.connection(write=True) as conn:
        return bool((await conn.execute(update)).rowcount == 1)


async def link_attempt(
    store: RunStore, project: str, domain: str, name: str, number: int, link: str
) -> None:
    """Record where attempt ``number``'s remote run is seen (its page in the system's UI)."""
    update = (
        run_attempts.update()
        .where(*named(run_attempts, project, domain, name), run_attempts.c.number == number)
        .values(link=link)
    )
    async with store.connection(write=True) as conn:
        await conn.execute(update)


async def adopt_attempt(
    store: RunStore, project: str, domain: str, name: str, number: int, old: str, new: str
) -> bool:
    """Move a running attempt from worker ``old`` (gone) to ``new``; False if another
    worker took it first."""
    update = (
        run_attempts.update()
        .where(
            *named(run_attempts, project, domain, name),
            run_attempts.c.number == number,
            run_attempts.c.phase.in_([p.value for p in _LIVE_ATTEMPT]),
            run_attempts.c.worker == old,
        )
        .values(worker=new, updated_at=datetime.now(UTC))
    )
    return await _moved(store, update, project, domain, name, new)


async def take_retry(
    store: RunStore, project: str, domain: str, name: str, number: int, old: str, new: str
) -> bool:
    """Move a run whose attempt ``number`` failed and waits to be retried from worker
    ``old`` (gone) to ``new``, which starts the next attempt; False if another worker took
    it first, or the next attempt began meanwhile."""
    newer = (
        sa.select(run_attempts.c.number)
        .where(*named(run_attempts, project, domain, name), run_attempts.c.number > number)
        .exists()
    )
    update = (
        run_attempts.update()
        .where(
            *named(run_attempts, project, domain, name),
            run_attempts.c.number == number,
            run_attempts.c.phase == AttemptPhase.RETRYABLE_FAILED.value,
            run_attempts.c.worker == old,
            ~newer,
        )
        .values(worker=new, updated_at=datetime.now(UTC))
    )
    return await _moved(store, update, project, domain, name, new)


async def _moved(
    store: RunStore, update: Any, project: str, domain: str, name: str, new: str
) -> bool:
    """Run ``update``, which moves an attempt to worker ``new``; if it moved one, move the
    run's claim to ``new`` in the same transaction, so that only ``new`` begins its next
    attempt (:func:`start_attempt`). Return whether it moved."""
    async with store.connection(write=True) as conn:
        if (await conn.execute(update)).rowcount != 1:
            return False
        claim = runs.update().where(*named(runs, project, domain, name)).values(claimed_by=new)
        await conn.execute(claim)
        return True


async def take_claim(
    store: RunStore, project: str, domain: str, name: str, old: str, new: str
) -> bool:
    """Move the claim of a RUNNING run that has no attempt yet from worker ``old`` (gone)
    to ``new``; False if it started meanwhile or another worker took it first."""
    update = (
        runs.update()
        .where(
            *named(runs, project, domain, name),
            runs.c.phase == "RUNNING",
            runs.c.attempts == 0,
            runs.c.claimed_by == old,
        )
        .values(claimed_by=new, updated_at=datetime.now(UTC))
    )
    async with store.connection(write=True) as conn:
        return bool((await conn.execute(update)).rowcount == 1)


async def attempts(store: RunStore, project: str, domain: str, name: str) -> list[Attempt]:
    """The run's attempts, first first."""
    rows = await _of_run(store, run_attempts, run_attempts.c.number, project, domain, name)
    return [Attempt.model_validate(r) for r in rows]


async def history(store: RunStore, project: str, domain: str, name: str) -> list[PhaseChange]:
    """Every phase change of the run and its attempts, oldest first."""
    rows = await _of_run(store, run_phases, run_phases.c.id, project, domain, name)
    return [PhaseChange.model_validate(r) for r in rows]


async def _of_run(
    store: RunStore, table: sa.Table, order: Any, project: str, domain: str, name: str
) -> list[dict[str, Any]]:
    query = sa.select(table).where(*named(table, project, domain, name)).order_by(order)
    async with store.connection() as conn:
        return [utc_row(r) for r in (await conn.execute(query)).mappings()]


async def unpublished_changes(store: RunStore, limit: int = 500) -> list[PhaseChange]:
    """Phase changes whose lifecycle event has not gone out yet, oldest first."""
    query = (
        _CHANGES.where(run_phases.c.published_at.is_(None)).order_by(run_phases.c.id).limit(limit)
    )
    async with store.connection() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [PhaseChange.model_validate(utc_row(r)) for r in rows]


async def relay_changes(
    store: RunStore,
    send: Callable[[list[PhaseChange]], Awaitable[None]],
    limit: int = 500,
) -> int:
    """Hand the oldest unpublished changes to ``send``, and mark them published once it
    returned; return how many. If ``send`` raises, none is marked.

    On PostgreSQL the changes are claimed: locked in a transaction until they are marked
    (``FOR UPDATE SKIP LOCKED``), so the relays of several workers never send one twice.
    A relay takes no change of a run while an earlier change of that run is unpublished,
    so each run's changes go out in order whichever relay sends them. On SQLite one
    process relays, and holding its one write lock while the broker answers would stall
    every write, so it reads, sends, then marks.
    """
    if store.sqlite:
        changes = await unpublished_changes(store, limit)
        if changes:
            await send(changes)
            await mark_published(store, [c.id for c in changes])
        return len(changes)
    earlier = run_phases.alias("earlier")
    query = (
        _CHANGES.where(
            run_phases.c.published_at.is_(None),
            ~sa.exists().where(
                earlier.c.project == run_phases.c.project,
                earlier.c.domain == run_phases.c.domain,
                earlier.c.name == run_phases.c.name,
                earlier.c.id < run_phases.c.id,
                earlier.c.published_at.is_(None),
            ),
        )
        .order_by(run_phases.c.id)
        .limit(limit)
        .with_for_update(of=run_phases, skip_locked=True)  # the changes, not their runs
    )
    async with store.connection(write=True) as conn:
        rows = (await conn.execute(query)).mappings().all()
        changes = [PhaseChange.model_validate(utc_row(r)) for r in rows]
        if changes:
            await send(changes)
            published = (
                run_phases.update()
                .where(run_phases.c.id.in_([c.id for c in changes]))
                .values(published_at=datetime.now(UTC))
            )
            await conn.execute(published)
    return len(changes)


async def runs_of(store: RunStore, changes: Sequence[PhaseChange]) -> list[RunRecord]:
    """The runs ``changes`` are of, in one query (the relay's, for what a run's end says)."""
    keys = {(c.project, c.domain, c.name) for c in changes}
    if not keys:
        return []
    query = sa.select(runs).where(sa.tuple_(runs.c.project, runs.c.domain, runs.c.name).in_(keys))
    async with store.connection() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [run_record(r) for r in rows]


async def mark_published(store: RunStore, ids: Sequence[int]) -> None:
    if not ids:
        return
    update = (
        run_phases.update()
        .where(run_phases.c.id.in_(list(ids)))
        .values(published_at=datetime.now(UTC))
    )
    async with store.connection(write=True) as conn:
        await conn.execute(update)

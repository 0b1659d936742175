"""Many runs in one transaction: admitting a batch of requests, and claiming the runs a
look of the starter found. Companion of :mod:`sensors.runs.store`, whose one-run writes
these match, row for row.

A busy worker admits and starts runs by the hundred. Each transaction costs about as much
as its statements, whatever the number of rows they write, so doing a batch's runs
together is what lets one worker keep up with a burst. Nothing about the guarantees
changes: the unique run name and the consumed-events claims are the same constraints,
checked in the same transaction as the rows they protect. Where a batch meets a refusal
(another run consumed one of its events), it is undone and its runs are created one at a
time, so that each is refused or accepted on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from sensors.runs.consumed import claim_all
from sensors.runs.limits import Waiting
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore, queued_row, run_record
from sensors.runs.tables import ROWS, dialect_insert, phase_row, runs
from sensors.runs.together import Transaction
from triggers.errors import ConsumedError

__all__ = ["claim_runs", "create_runs", "runs_named"]


Key = tuple[str, str, str]  # project, domain, name


async def claim_runs(store: RunStore, queued: Sequence[Waiting], worker: str) -> list[RunRecord]:
    """Claim the ``queued`` runs that are still QUEUED for ``worker`` (QUEUED -> RUNNING, as
    :meth:`RunStore.transition` with ``expected=QUEUED`` does one); return those claimed.
    A run another worker claimed first is left out."""
    if not queued:
        return []
    now = datetime.now(UTC)
    update = (
        runs.update()
        .where(
            runs.c.id.in_([run.id for run in queued]),
            runs.c.phase == WorkflowPhase.QUEUED.value,
        )
        .values(
            phase=WorkflowPhase.RUNNING.value,
            claimed_by=worker,
            started_at=sa.func.coalesce(runs.c.started_at, now),
            updated_at=now,
        )
        .returning(*runs.c)
    )

    def write(transaction: Transaction) -> list[RunRecord]:
        claimed = [run_record(row) for row in transaction.conn.execute(update).mappings()]
        transaction.phases += [phase_row(run, None, WorkflowPhase.RUNNING, now) for run in claimed]
        return claimed

    position = {run.key: n for n, run in enumerate(queued)}
    return sorted(await store.together(write), key=lambda run: position[run.key])


async def runs_named(store: RunStore, keys: Sequence[Key]) -> dict[Key, RunRecord]:
    """The runs that exist of those named, by (project, domain, name)."""
    found: dict[Key, RunRecord] = {}
    for start in range(0, len(keys), ROWS):
        chunk = keys[start : start + ROWS]
        query = sa.select(runs).where(
            sa.tuple_(runs.c.project, runs.c.domain, runs.c.name).in_(chunk)
        )
        async with store.connection() as conn:
            for row in (await conn.execute(query)).mappings():
                run = run_record(row)
                found[run.key] = run
    return found


async def create_runs(
    store: RunStore, news: Sequence[NewRun]
) -> list[tuple[RunRecord, bool] | ConsumedError]:
    """:meth:`RunStore.create_run` for each of ``news`` (distinct names), in one transaction
    when none of them is refused; the answers in the order of ``news``.

    Each answer is the run and whether this call created it (an existing name returns the
    existing run, whatever it consumed), or the ConsumedError that refused it (another run
    of its sensor consumed one of its events; nothing of it was written).
    """
    if not news:
        return []
    now = datetime.now(UTC)
    try:
        created = await _create_together(store, news, now)
    except ConsumedError:
        return [await _create_alone(store, new) for new in news]
    existing = await runs_named(store, [new.key for new in news if new.key not in created])
    return [
        (created[new.key], True) if new.key in created else (existing[new.key], False)
        for new in news
    ]


async def _create_together(
    store: RunStore, news: Sequence[NewRun], now: datetime
) -> dict[Key, RunRecord]:
    """Create the runs of ``news`` whose names are free; return them.

    Raises:
        ConsumedError: one of them consumed an event that a run consumed already; nothing
            was written.
    """
    rows = {new.key: queued_row(new, now) for new in news}

    def write(transaction: Transaction) -> dict[Key, RunRecord]:
        created: dict[Key, RunRecord] = {}
        insert = dialect_insert(transaction.conn)
        values = list(rows.values())
        for start in range(0, len(values), ROWS):
            statement = (
                insert(runs)
                .values(values[start : start + ROWS])
                .on_conflict_do_nothing(index_elements=["project", "domain", "name"])
                .returning(runs.c.project, runs.c.domain, runs.c.name)
            )
            for row in transaction.conn.execute(statement):
                key = (str(row.project), str(row.domain), str(row.name))
                created[key] = run_record(rows[key])
        fresh = [new for new in news if new.key in created]
        transaction.phases += [phase_row(new, None, WorkflowPhase.QUEUED, now) for new in fresh]
        claim_all(transaction.conn, fresh, now)
        return created

    return await store.together(write)


async def _create_alone(store: RunStore, new: NewRun) -> tuple[RunRecord, bool] | ConsumedError:
    try:
        return await store.create_run(new)
    except ConsumedError as exc:
        return exc

"""Many runs in one transaction, on SQLite and PostgreSQL: a batch of requests admitted
together, a look's runs claimed together, and the group commit that the store's own writes
share. Each must answer exactly as the one-run writes do."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from sensors.runs import history as runs_history
from sensors.runs.batch import claim_runs, create_runs
from sensors.runs.limits import waiting
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from sensors.runs.tables import run_phases, runs
from sensors.runs.together import Transaction
from tests.fixtures.runs import new_run
from tests.integration.test_consumed_events import claims, consuming
from triggers.errors import ConsumedError, RunNotFoundError

pytestmark = pytest.mark.integration


async def _phases(store: RunStore, name: str) -> list[str]:
    query = sa.select(run_phases.c.phase).where(
        run_phases.c.name == name, run_phases.c.attempt.is_(None)
    )
    async with store.connection() as conn:
        return [row.phase for row in await conn.execute(query.order_by(run_phases.c.id))]


async def test_a_batch_creates_its_new_runs_and_returns_the_existing_ones_as_they_are(
    run_store: RunStore,
) -> None:
    # Given a run that exists already
    existing, _ = await run_store.create_run(new_run("flow-old"))
    # When a batch asks for it again and for two new runs
    answers = await create_runs(
        run_store, [new_run("flow-a"), new_run("flow-old"), new_run("flow-b")]
    )
    # Then the answers come in order: the new runs created, the old one as it was
    assert [(r.name, created) for r, created in answers] == [  # type: ignore[misc]
        ("flow-a", True),
        ("flow-old", False),
        ("flow-b", True),
    ]
    assert answers[1] == (existing, False)
    # And each new run is QUEUED, with its phase change recorded, as create_run does
    for name in ("flow-a", "flow-b"):
        assert (await run_store.get_run(name)).phase == WorkflowPhase.QUEUED
        assert await _phases(run_store, name) == ["QUEUED"]
    assert await _phases(run_store, "flow-old") == ["QUEUED"]


async def test_a_run_of_a_batch_whose_events_were_consumed_is_refused_alone(
    run_store: RunStore,
) -> None:
    # Given an event that a run of the sensor consumed
    await run_store.create_run(consuming("flow-first", "e1"))
    # When a batch holds another run from that event, between two runs from others
    answers = await create_runs(
        run_store,
        [consuming("flow-a", "e2"), consuming("flow-stale", "e1"), consuming("flow-b", "e3")],
    )
    # Then that run alone is refused, and the others are created with their claims
    assert isinstance(answers[1], ConsumedError)
    assert "flow-first" in str(answers[1])
    assert [a[1] for a in (answers[0], answers[2])] == [True, True]  # type: ignore[index]
    with pytest.raises(RunNotFoundError):
        await run_store.get_run("flow-stale")
    assert sorted(run for *_, run in await claims(run_store)) == ["flow-a", "flow-b", "flow-first"]


async def test_two_runs_of_one_batch_from_the_same_event_make_one_run(
    run_store: RunStore,
) -> None:
    answers = await create_runs(
        run_store, [consuming("flow-one", "e1"), consuming("flow-two", "e1")]
    )
    assert answers[0] == (await run_store.get_run("flow-one"), True)
    assert isinstance(answers[1], ConsumedError)


async def test_a_look_claims_only_the_runs_still_queued(run_store: RunStore) -> None:
    # Given three QUEUED runs, one of which another worker claims meanwhile
    await create_runs(run_store, [new_run(f"flow-{n}") for n in range(3)])
    queued = await waiting(run_store)
    await run_store.transition(
        "p", "d", "flow-1", WorkflowPhase.RUNNING, expected=WorkflowPhase.QUEUED, claimed_by="w:2"
    )
    # When this worker claims the three it looked at
    claimed = await claim_runs(run_store, queued, "w:1")
    # Then it gets the other two, oldest first, as RUNNING and claimed by it
    assert [r.name for r in claimed] == ["flow-0", "flow-2"]
    assert {(r.phase, r.claimed_by) for r in claimed} == {(WorkflowPhase.RUNNING, "w:1")}
    assert all(r.started_at is not None for r in claimed)
    assert (await run_store.get_run("flow-1")).claimed_by == "w:2"
    assert await _phases(run_store, "flow-0") == ["QUEUED", "RUNNING"]
    assert await waiting(run_store) == []


async def test_writes_asked_for_at_once_share_a_transaction(run_store: RunStore) -> None:
    # Given runs that start attempts, all at once
    await create_runs(run_store, [new_run(f"flow-{n}") for n in range(6)])
    seen: list[int] = []

    def noting(transaction: Transaction) -> int:
        seen.append(id(transaction))
        return len(seen)

    # When their writes are asked for together with others
    await asyncio.gather(
        *(run_store.together(noting) for _ in range(6)),
        *(
            runs_history.start_attempt(run_store, "p", "d", f"flow-{n}", pid=n, worker="w:1")
            for n in range(6)
        ),
    )
    # Then fewer transactions than writes wrote them, and each write did its part
    assert len(set(seen)) < len(seen)
    for n in range(6):
        run = await run_store.get_run(f"flow-{n}")
        assert (run.attempts, run.pid) == (1, n)
        [attempt] = await runs_history.attempts(run_store, "p", "d", f"flow-{n}")
        assert (attempt.number, attempt.pid) == (1, n)


async def test_a_write_that_raises_fails_its_own_caller_and_no_other(run_store: RunStore) -> None:
    await create_runs(run_store, [new_run("flow-a"), new_run("flow-b")])

    def broken(transaction: Transaction) -> None:
        transaction.conn.execute(sa.update(runs).values(pid=-1))  # undone with its batch
        raise ValueError("this write is wrong")

    answers = await asyncio.gather(
        runs_history.start_attempt(run_store, "p", "d", "flow-a", pid=1, worker="w:1"),
        run_store.together(broken),
        runs_history.start_attempt(run_store, "p", "d", "no-such-run", pid=2, worker="w:1"),
        runs_history.start_attempt(run_store, "p", "d", "flow-b", pid=3, worker="w:1"),
        return_exceptions=True,
    )
    assert isinstance(answers[1], ValueError)
    assert isinstance(answers[2], RunNotFoundError)
    a, b = await run_store.get_run("flow-a"), await run_store.get_run("flow-b")
    assert [(r.attempts, r.pid) for r in (a, b)] == [(1, 1), (1, 3)]


async def test_a_move_writes_as_transition_did_and_a_repeat_of_a_final_phase_stands(
    run_store: RunStore,
) -> None:
    [(run, _)] = await create_runs(run_store, [new_run("flow-a")])  # type: ignore[misc]
    assert isinstance(run, RunRecord)
    started = await run_store.transition(
        "p", "d", "flow-a", WorkflowPhase.RUNNING, expected=WorkflowPhase.QUEUED, claimed_by="w"
    )
    assert (started.phase, started.claimed_by) == (WorkflowPhase.RUNNING, "w")
    assert started.started_at is not None and started.started_at >= run.created_at
    done = await run_store.transition("p", "d", "flow-a", WorkflowPhase.SUCCEEDED)
    again = await run_store.transition("p", "d", "flow-a", WorkflowPhase.SUCCEEDED)
    assert done == again and done.finished_at is not None and done.pid is None
    assert done.started_at == started.started_at
    assert await _phases(run_store, "flow-a") == ["QUEUED", "RUNNING", "SUCCEEDED"]

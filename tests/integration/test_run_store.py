"""The run store on SQLite and PostgreSQL: exactly-once creation and compare-and-set phases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sensors.runs.models import RunError, TriggerFailure
from sensors.runs.phases import ErrorKind, WorkflowPhase
from sensors.runs.sensor_records import (
    last_runs_by_sensor,
    list_trigger_failures,
    record_trigger_failure,
)
from sensors.runs.store import RunStore
from tests.fixtures.runs import new_run
from triggers.errors import IllegalTransitionError, RunNotFoundError, StoreError

pytestmark = pytest.mark.integration

P = WorkflowPhase


async def test_creating_a_run_twice_returns_the_first_and_creates_nothing(
    run_store: RunStore,
) -> None:
    first, created = await run_store.create_run(new_run())
    again, created_again = await run_store.create_run(new_run())
    assert (created, created_again) == (True, False)
    assert again.phase == P.QUEUED and again.created_at == first.created_at
    assert len(await run_store.list_runs()) == 1


async def test_twenty_concurrent_creates_of_one_name_create_exactly_one_run(
    run_store: RunStore,
) -> None:
    results = await asyncio.gather(*(run_store.create_run(new_run()) for _ in range(20)))
    assert sum(created for _, created in results) == 1
    assert {run.name for run, _ in results} == {"flow-abc"}


async def test_the_same_name_in_another_project_is_another_run(run_store: RunStore) -> None:
    await run_store.create_run(new_run(project="a"))
    _, created = await run_store.create_run(new_run(project="b"))
    assert created
    with pytest.raises(StoreError, match="give the project and domain"):
        await run_store.get_run("flow-abc")
    assert (await run_store.get_run("flow-abc", project="b", domain="d")).project == "b"


async def test_transitions_stamp_start_and_finish_and_keep_the_error(run_store: RunStore) -> None:
    queued, _ = await run_store.create_run(new_run())
    assert queued.started_at is None and queued.finished_at is None
    running = await run_store.transition("p", "d", "flow-abc", P.RUNNING, pid=123)
    assert running.started_at is not None and running.pid == 123
    assert running.updated_at >= queued.updated_at
    failed = await run_store.transition(
        "p",
        "d",
        "flow-abc",
        P.FAILED,
        error=RunError(kind=ErrorKind.USER, message="boom", traceback="tb"),
    )
    stored = await run_store.get_run("flow-abc")
    assert stored.phase == P.FAILED and stored.finished_at is not None and stored.pid is None
    assert stored.error == RunError(kind=ErrorKind.USER, message="boom", traceback="tb")
    assert failed.finished_at == stored.finished_at
    assert stored.created_at.tzinfo is not None


async def test_an_illegal_transition_is_refused(run_store: RunStore) -> None:
    await run_store.create_run(new_run())
    with pytest.raises(IllegalTransitionError, match=r"QUEUED to SUCCEEDED.*RUNNING"):
        await run_store.transition("p", "d", "flow-abc", P.SUCCEEDED)
    assert (await run_store.get_run("flow-abc")).phase == P.QUEUED


async def test_repeating_a_final_phase_keeps_the_first_finish_and_error(
    run_store: RunStore,
) -> None:
    # Given a run that failed once
    await run_store.create_run(new_run())
    await run_store.transition("p", "d", "flow-abc", P.RUNNING)
    first_error = RunError(kind=ErrorKind.USER, message="first")
    failed = await run_store.transition("p", "d", "flow-abc", P.FAILED, error=first_error)
    # When the same final phase is written again (a retried or redelivered update)
    again = await run_store.transition(
        "p", "d", "flow-abc", P.FAILED, error=RunError(kind=ErrorKind.SYSTEM, message="late")
    )
    # Then nothing changes
    stored = await run_store.get_run("flow-abc")
    assert again == stored == failed
    assert stored.error == first_error


async def test_a_claim_succeeds_once(run_store: RunStore) -> None:
    await run_store.create_run(new_run())
    claims = await asyncio.gather(
        *(
            run_store.transition("p", "d", "flow-abc", P.RUNNING, expected=P.QUEUED)
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(c, Exception) for c in claims) == 1
    assert all(isinstance(c, IllegalTransitionError) for c in claims if isinstance(c, Exception))


async def test_racing_final_phases_leave_exactly_one_winner(run_store: RunStore) -> None:
    await run_store.create_run(new_run())
    await run_store.transition("p", "d", "flow-abc", P.RUNNING)
    results = await asyncio.gather(
        run_store.transition("p", "d", "flow-abc", P.SUCCEEDED),
        run_store.transition("p", "d", "flow-abc", P.FAILED),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert (await run_store.get_run("flow-abc")).phase == winners[0].phase


async def test_an_unknown_run_is_reported_with_how_to_find_runs(run_store: RunStore) -> None:
    with pytest.raises(RunNotFoundError, match=r"no run named 'nope'.*tripwire runs list"):
        await run_store.get_run("nope")


async def test_list_runs_filters_and_orders_newest_first(run_store: RunStore) -> None:
    for n in range(3):
        await run_store.create_run(
            new_run(
                f"r{n}",
                sensor="a.trigger" if n < 2 else "b.trigger",
                flow="first" if n == 0 else "flow",
            )
        )
    await run_store.transition("p", "d", "r1", P.RUNNING)
    assert [r.name for r in await run_store.list_runs()] == ["r2", "r1", "r0"]
    assert [r.name for r in await run_store.list_runs(limit=1)] == ["r2"]
    assert [r.name for r in await run_store.list_runs(phase=P.RUNNING)] == ["r1"]
    assert [r.name for r in await run_store.list_runs(phase=[P.QUEUED, P.FAILED])] == ["r2", "r0"]
    assert [r.name for r in await run_store.list_runs(flow="first")] == ["r0"]
    assert [r.name for r in await run_store.list_runs(sensor_id="a.trigger")] == ["r1", "r0"]
    assert await run_store.list_runs(project="other") == []
    last = await last_runs_by_sensor(run_store)
    assert {k: v.name for k, v in last.items()} == {"a.trigger": "r1", "b.trigger": "r2"}


async def test_a_trigger_failure_is_recorded_once_per_event(run_store: RunStore) -> None:
    now = datetime.now(UTC)

    def failure(event_id: str, at: datetime) -> TriggerFailure:
        return TriggerFailure(
            sensor_id="s.trigger", event_name="e", event_id=event_id, reason="bad", created_at=at
        )

    await record_trigger_failure(run_store, failure("1", now))
    await record_trigger_failure(run_store, failure("1", now + timedelta(seconds=1)))  # redelivered
    await record_trigger_failure(run_store, failure("2", now + timedelta(seconds=2)))
    found = await list_trigger_failures(run_store, sensor_id="s.trigger")
    assert [(f.event_id, f.created_at) for f in found] == [
        ("2", now + timedelta(seconds=2)),
        ("1", now),
    ]
    assert await list_trigger_failures(run_store, sensor_id="other") == []


async def test_opening_a_migrated_store_again_changes_nothing(
    store_url: str, run_store: RunStore
) -> None:
    await run_store.create_run(new_run())
    version = sa.text("SELECT version_num FROM alembic_version")
    async with run_store.engine.connect() as conn:
        before = (await conn.execute(version)).scalars().all()
    async with await RunStore.open(store_url) as reopened:
        assert [r.name for r in await reopened.list_runs()] == ["flow-abc"]
        async with reopened.engine.connect() as conn:
            assert (await conn.execute(version)).scalars().all() == before
    assert len(before) == 1


async def test_an_unreachable_database_is_named_in_the_error() -> None:
    url = "postgresql+asyncpg://someone:secret@127.0.0.1:1/nowhere"
    with pytest.raises(StoreError) as caught:
        await RunStore.open(url)
    message = str(caught.value)
    assert "127.0.0.1:1/nowhere" in message and "TRIPWIRE_DATABASE_URL" in message
    assert "secret" not in message


async def test_a_database_lost_after_opening_is_named_in_the_error() -> None:
    url = "postgresql+asyncpg://someone:secret@127.0.0.1:1/nowhere"
    async with await RunStore.open(url, migrate=False) as unmigrated:
        with pytest.raises(StoreError) as caught:
            await unmigrated.list_runs()
    message = str(caught.value)
    assert "127.0.0.1:1/nowhere" in message and "TRIPWIRE_DATABASE_URL" in message
    assert "secret" not in message


async def test_workers_opening_a_new_store_together_all_succeed(store_url: str) -> None:
    stores = await asyncio.gather(*(RunStore.open(store_url) for _ in range(4)))
    for opened in stores:
        await opened.close()

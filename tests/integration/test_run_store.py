"""The run store on SQLite and PostgreSQL: exactly-once creation and compare-and-set phases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sensors.runs import history as runs_history
from sensors.runs.models import PhaseChange, RunError, TriggerFailure
from sensors.runs.phases import ErrorKind, WorkflowPhase
from sensors.runs.sensor_records import (
    last_runs_by_sensor,
    list_trigger_failures,
    record_trigger_failure,
)
from sensors.runs.store import RunStore
from sensors.runs.tables import run_attempts, runs
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


async def test_the_migrations_make_the_columns_the_schema_declares_for_runs_and_attempts(
    run_store: RunStore,
) -> None:
    def columns(conn: sa.Connection) -> dict[str, list[str]]:
        inspector = sa.inspect(conn)
        return {
            t.name: sorted(c["name"] for c in inspector.get_columns(t.name))
            for t in (runs, run_attempts)
        }

    async with run_store.connection() as conn:
        found = await conn.run_sync(columns)
    assert found == {t.name: sorted(t.c.keys()) for t in (runs, run_attempts)}


async def test_a_run_keeps_its_trace_context_and_its_changes_go_out_with_it(
    run_store: RunStore,
) -> None:
    # Given a run in a trace (its tracestate as long as W3C allows) and one in none
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    state = ",".join(f"v{n:02}=" + "x" * 10 for n in range(32))[:512]
    traced = new_run("traced").model_copy(update={"traceparent": trace, "tracestate": state})
    await run_store.create_run(traced)
    await run_store.create_run(new_run("plain"))
    # Then the store gives it back
    run = await run_store.get_run("traced")
    assert (run.traceparent, run.tracestate) == (trace, state)
    assert (await run_store.get_run("plain")).traceparent is None
    # And an attempt of it with a span, and one without
    attempt_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
    for traceparent in (attempt_trace, None):
        await runs_history.start_attempt(
            run_store, *traced.key, pid=None, worker="w", traceparent=traceparent
        )
    # Then the lifecycle relay gets each change with the trace context of its attempt's
    # span where there is one, else of its run
    sent: list[PhaseChange] = []

    async def send(changes: list[PhaseChange]) -> None:
        sent.extend(changes)

    while await runs_history.relay_changes(run_store, send):
        pass  # on PostgreSQL, a pass sends a run's changes one at a time
    found = [(c.name, c.attempt, c.traceparent, c.tracestate) for c in sent]
    assert found == [
        ("traced", None, trace, state),
        ("plain", None, None, None),
        ("traced", 1, attempt_trace, None),
        ("traced", 2, trace, state),
    ]

"""Attempts, phase history (the lifecycle outbox) and abort requests, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensors.runs import history as runs_history
from sensors.runs.models import RunError
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.runs import new_run
from triggers.errors import ClaimLostError, IllegalTransitionError, RunNotFoundError

pytestmark = pytest.mark.integration

P, A = WorkflowPhase, AttemptPhase


async def test_history_keeps_every_move_of_the_run_and_its_attempts_in_order(
    run_store: RunStore,
) -> None:
    run, _ = await run_store.create_run(new_run())
    await run_store.transition("p", "d", run.name, P.RUNNING)
    first = await runs_history.start_attempt(run_store, "p", "d", run.name, pid=11, worker="w:1")
    boom = RunError(code="ValueError", kind=ErrorKind.USER, message="boom")
    await runs_history.finish_attempt(
        run_store, "p", "d", run.name, first.number, A.RETRYABLE_FAILED, boom
    )
    second = await runs_history.start_attempt(run_store, "p", "d", run.name, pid=12, worker="w:1")
    await runs_history.finish_attempt(run_store, "p", "d", run.name, second.number, A.SUCCEEDED)
    await run_store.transition("p", "d", run.name, P.SUCCEEDED)

    moves = [
        (c.attempt, c.phase) for c in await runs_history.history(run_store, "p", "d", run.name)
    ]
    assert moves == [
        (None, "QUEUED"),
        (None, "RUNNING"),
        (1, "RUNNING"),
        (1, "RETRYABLE_FAILED"),
        (2, "RUNNING"),
        (2, "SUCCEEDED"),
        (None, "SUCCEEDED"),
    ]
    attempts = await runs_history.attempts(run_store, "p", "d", run.name)
    assert [(a.number, a.phase, a.pid) for a in attempts] == [
        (1, A.RETRYABLE_FAILED, 11),
        (2, A.SUCCEEDED, 12),
    ]
    assert attempts[0].error == boom
    assert (await run_store.get_run(run.name, project="p", domain="d")).attempts == 2


async def test_an_attempt_ends_once_and_an_illegal_move_is_logged_and_leaves_no_history(
    run_store: RunStore, caplog: pytest.LogCaptureFixture
) -> None:
    run, _ = await run_store.create_run(new_run())
    attempt = await runs_history.start_attempt(
        run_store, "p", "d", run.name, pid=None, worker="w:1"
    )
    assert (
        await runs_history.finish_attempt(run_store, "p", "d", run.name, attempt.number, A.FAILED)
        is True
    )
    assert (
        await runs_history.finish_attempt(
            run_store, "p", "d", run.name, attempt.number, A.SUCCEEDED
        )
        is False
    )
    with pytest.raises(IllegalTransitionError, match="cannot go from QUEUED to SUCCEEDING"):
        await run_store.transition("p", "d", run.name, P.SUCCEEDING)
    assert f"run p/d/{run.name}: refused: a run cannot go from QUEUED to SUCCEEDING" in caplog.text
    phases = [c.phase for c in await runs_history.history(run_store, "p", "d", run.name)]
    assert phases == ["QUEUED", "RUNNING", "FAILED"]


async def test_abort_ends_a_queued_run_at_once_and_leaves_a_final_one_alone(
    run_store: RunStore,
) -> None:
    run, _ = await run_store.create_run(new_run())
    aborted, changed = await run_store.request_abort("p", "d", run.name, "wrong inputs")
    assert changed and aborted.phase == P.ABORTED and aborted.abort_cause == "wrong inputs"
    again, changed_again = await run_store.request_abort("p", "d", run.name, "twice")
    assert not changed_again and again.abort_cause == "wrong inputs"


async def test_abort_of_a_running_run_goes_through_aborting(run_store: RunStore) -> None:
    run, _ = await run_store.create_run(new_run())
    await run_store.transition("p", "d", run.name, P.RUNNING)
    aborting, changed = await run_store.request_abort("p", "d", run.name, "stop it")
    assert changed and aborting.phase == P.ABORTING
    # Only ABORTED (or FAILED) can follow: a late success is refused.
    with pytest.raises(IllegalTransitionError):
        await run_store.transition("p", "d", run.name, P.SUCCEEDED)
    done = await run_store.transition("p", "d", run.name, P.ABORTED)
    assert done.phase == P.ABORTED and done.finished_at is not None


async def test_the_outbox_gives_each_change_until_it_is_marked_published(
    run_store: RunStore,
) -> None:
    run, _ = await run_store.create_run(new_run())
    await run_store.transition("p", "d", run.name, P.RUNNING)
    pending = await runs_history.unpublished_changes(run_store)
    assert [c.phase for c in pending] == ["QUEUED", "RUNNING"]
    await runs_history.mark_published(run_store, [pending[0].id])
    assert [c.phase for c in await runs_history.unpublished_changes(run_store)] == ["RUNNING"]


async def test_runs_can_be_listed_since_a_time(run_store: RunStore) -> None:
    await run_store.create_run(new_run("old"))
    now = datetime.now(UTC)
    assert [r.name for r in await run_store.list_runs(since=now - timedelta(minutes=1))] == ["old"]
    assert await run_store.list_runs(since=now + timedelta(minutes=1)) == []


async def test_only_the_worker_holding_a_runs_claim_begins_its_attempts(
    run_store: RunStore,
) -> None:
    # Given a run claimed by worker a, which the others took for gone, so that b took the
    # claim over before a began its first attempt
    run, _ = await run_store.create_run(new_run())
    await run_store.transition("p", "d", run.name, P.RUNNING, claimed_by="a:1")
    assert await runs_history.take_claim(run_store, "p", "d", run.name, "a:1", "b:1")
    # When a, back from its pause, begins the attempt
    with pytest.raises(ClaimLostError, match=r"taken over by worker b:1.*\(a:1\) for gone"):
        await runs_history.start_attempt(run_store, "p", "d", run.name, pid=1, worker="a:1")
    # Then the store refuses it, and only b's attempt is recorded
    first = await runs_history.start_attempt(run_store, "p", "d", run.name, pid=2, worker="b:1")
    assert [a.worker for a in await runs_history.attempts(run_store, "p", "d", run.name)] == ["b:1"]
    # And so on when a retry, and then a running attempt, move to another worker
    await runs_history.finish_attempt(
        run_store, "p", "d", run.name, first.number, A.RETRYABLE_FAILED
    )
    assert await runs_history.take_retry(run_store, "p", "d", run.name, 1, "b:1", "c:1")
    with pytest.raises(ClaimLostError):
        await runs_history.start_attempt(run_store, "p", "d", run.name, pid=3, worker="b:1")
    second = await runs_history.start_attempt(run_store, "p", "d", run.name, pid=4, worker="c:1")
    assert await runs_history.adopt_attempt(
        run_store, "p", "d", run.name, second.number, "c:1", "d:1"
    )
    with pytest.raises(ClaimLostError):
        await runs_history.start_attempt(run_store, "p", "d", run.name, pid=5, worker="c:1")
    assert (await run_store.get_run(run.name, project="p", domain="d")).claimed_by == "d:1"
    # (a name that is no run is still that)
    with pytest.raises(RunNotFoundError):
        await runs_history.start_attempt(run_store, "p", "d", "no-such-run", pid=6, worker="a:1")

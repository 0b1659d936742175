"""The signal store on SQLite and PostgreSQL: waits, signals once, timeouts, and run ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sensors.runs.phases import WorkflowPhase
from sensors.runs.signals import (
    StoreSignals,
    get_signal,
    give_signal,
    list_signals,
    time_out,
    wait_started,
)
from sensors.runs.store import RunStore
from tests.fixtures.runs import new_run
from triggers.errors import SignalError
from triggers.settings import Settings
from triggers.waits import SignalPhase

pytestmark = pytest.mark.integration

RUN = {"project": "p", "domain": "d", "run_name": "flow-abc"}


async def waiting(store: RunStore, name: str = "approval", **extra: Any) -> Any:
    fields = {"expected_type": "bool", "timeout_at": None} | extra
    return await wait_started(store, **RUN, name=name, **fields)


async def test_a_signal_is_given_once_and_only_with_the_expected_type(run_store: RunStore) -> None:
    wait = await waiting(run_store)
    assert wait.phase == SignalPhase.RUNNING and wait.value is None
    with pytest.raises(TypeError, match="expects a bool, not int 1"):
        await give_signal(run_store, **RUN, name="approval", value=1)
    given = await give_signal(run_store, **RUN, name="approval", value=True)
    assert (given.phase, given.value) == (SignalPhase.SUCCEEDED, True)
    with pytest.raises(SignalError, match="signalled already"):
        await give_signal(run_store, **RUN, name="approval", value=False)
    stored = await get_signal(run_store, **RUN, name="approval")
    assert stored is not None and stored.value is True and stored.signalled_at is not None


async def test_two_signals_racing_deliver_exactly_one(run_store: RunStore) -> None:
    await waiting(run_store, "count", expected_type="int")
    results = await asyncio.gather(
        *(give_signal(run_store, **RUN, name="count", value=n) for n in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, SignalError) for r in results if isinstance(r, Exception))


async def test_a_later_attempt_gets_the_value_an_earlier_one_was_signalled(
    run_store: RunStore,
) -> None:
    await waiting(run_store)
    await give_signal(run_store, **RUN, name="approval", value=False)
    again = await waiting(run_store)  # a retry waits for the same event
    assert (again.phase, again.value) == (SignalPhase.SUCCEEDED, False)
    with pytest.raises(TypeError, match="as a bool before"):
        await waiting(run_store, expected_type="int")


async def test_a_timed_out_wait_refuses_signals_until_the_run_waits_again(
    run_store: RunStore,
) -> None:
    await waiting(run_store, timeout_at=datetime.now(UTC) - timedelta(seconds=1))
    # Past its timeout, a signal is refused even before the run marked it TIMED_OUT
    with pytest.raises(SignalError, match="timed out"):
        await give_signal(run_store, **RUN, name="approval", value=True)
    assert (await time_out(run_store, **RUN, name="approval")).phase == SignalPhase.TIMED_OUT
    with pytest.raises(SignalError, match="TIMED_OUT"):
        await give_signal(run_store, **RUN, name="approval", value=True)
    # A retry waits again, and can be signalled
    assert (await waiting(run_store)).phase == SignalPhase.RUNNING
    assert (await give_signal(run_store, **RUN, name="approval", value=True)).value is True


async def test_a_run_that_ends_ends_its_waits(run_store: RunStore) -> None:
    run, _ = await run_store.create_run(new_run())
    await run_store.transition("p", "d", run.name, WorkflowPhase.RUNNING)
    await waiting(run_store, "approval")
    await waiting(run_store, "budget", expected_type="float", action_name="spend")
    await run_store.request_abort("p", "d", run.name, "no")
    await run_store.transition("p", "d", run.name, WorkflowPhase.ABORTED)
    waits = await list_signals(run_store, **RUN)
    assert [(w.name, w.action_name, w.phase) for w in waits] == [
        ("approval", None, SignalPhase.ABORTED),
        ("budget", "spend", SignalPhase.ABORTED),
    ]
    assert [w.name for w in await list_signals(run_store, **RUN, action_name="spend")] == ["budget"]


async def test_the_sdk_reaches_the_store_of_its_settings_through_store_signals(
    run_store: RunStore, store_url: str
) -> None:
    # Given the backend the SDK loads from the engine's entry point, on this store
    async with StoreSignals(Settings(database_url=store_url)) as signals:
        # Then a wait, its signal and a timeout go to the store, as the functions do
        started = await signals.wait_started(
            **RUN, name="approval", expected_type="bool", timeout_at=None
        )
        assert started.phase == SignalPhase.RUNNING
        await signals.give_signal(**RUN, name="approval", value=True)
        late = datetime.now(UTC) - timedelta(seconds=1)
        await signals.wait_started(**RUN, name="count", expected_type="int", timeout_at=late)
        assert (await signals.time_out(**RUN, name="count")).phase == SignalPhase.TIMED_OUT
        listed = await signals.list_signals(**RUN, limit=10)
        assert [(s.name, s.phase) for s in listed] == [
            ("approval", SignalPhase.SUCCEEDED),
            ("count", SignalPhase.TIMED_OUT),
        ]
        assert await signals.get_signal(**RUN, name="nothing") is None
    stored = await get_signal(run_store, **RUN, name="approval")
    assert stored is not None and stored.value is True

"""Typed signals end to end: runs that wait for an event, and everyone who signals them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sensors.runs.phases import ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import FLOWS, finished_run, tripwire_cli
from tests.fixtures.signals import use_api, waiting_run
from tests.fixtures.waits import eventually
from tests.integration.flows.signal_flows import signal_note
from triggers import Condition, Event, SignalError, publish

pytestmark = pytest.mark.integration


async def test_a_run_waits_for_a_typed_signal_and_gets_its_value(store: RunStore) -> None:
    # Given a run paused in wait_for_event("approval", type=bool)
    event_id = await publish.aio("needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    # Then the run stays RUNNING and the event is listed as RUNNING, with its type
    assert (await store.get_run(run.name)).phase == WorkflowPhase.RUNNING
    # (The synchronous calls go to a thread: blocking this loop, which runs the engine too,
    # could leave the engine holding a write of the SQLite store that they wait for.)
    event = await asyncio.to_thread(Event.get, "approval", run.name)
    assert event is not None
    assert (event.name, event.run_name, event.action_name) == ("approval", run.name, None)
    assert (event.phase, event.expected_type, event.value) == ("RUNNING", bool, None)
    assert [e.name for e in await asyncio.to_thread(Event.listall, run.name)] == ["approval"]
    assert json.loads(event.to_json()) == event.to_dict()
    assert event.to_dict()["expected_type"] == "bool"
    # When it is signalled with the wrong type, nothing changes
    with pytest.raises(TypeError, match="expects a bool, not str 'yes'"):
        event.signal("yes")
    with pytest.raises(TypeError, match="bool, int, float or str, not list"):
        event.signal([True])  # type: ignore[arg-type]
    # And Flyte 2's name for it finds the same: code written for Flyte's Condition reads it
    condition = await asyncio.to_thread(Condition.get, "approval", run.name)
    assert condition is not None and condition.to_dict() == event.to_dict()
    # When it is signalled True
    assert (await asyncio.to_thread(event.signal, True)).phase == "SUCCEEDED"
    # Then the run gets True and succeeds
    done = await finished_run(store, event_id)
    assert done.phase == WorkflowPhase.SUCCEEDED
    assert signal_note(run.name).read_text() == "True"
    # And a second signal is refused, naming the first
    again = await asyncio.to_thread(Event.get, "approval", run.name)
    assert again is not None
    with pytest.raises(SignalError, match="was signalled already, with True"):
        await asyncio.to_thread(again.signal, False)
    assert await asyncio.to_thread(Event.get, "no_such_event", run.name) is None


@pytest.fixture(params=["store", "api"])
def reach(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How this process, and the runs the worker starts, reach run state: the store
    directly, or the HTTP API, as a run in a pod does."""
    if request.param == "api":
        api = request.getfixturevalue("api")
        use_api(monkeypatch, api.url, api.tokens["admin"])
    return str(request.param)


async def test_every_call_has_an_awaitable_form(store: RunStore, reach: str) -> None:
    event_id = await publish.aio("needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    [event] = list(await Event.listall.aio(run.name, limit=10))
    await event.signal.aio(False)
    assert (await finished_run(store, event_id)).phase == WorkflowPhase.SUCCEEDED
    assert signal_note(run.name).read_text() == "False"
    again = await Event.get.aio("approval", run.name)
    assert again is not None and (again.phase, again.value) == ("SUCCEEDED", False)
    assert list(await Event.listall.aio("no-such-run")) == []


async def test_a_wait_that_times_out_fails_the_run_as_user(store: RunStore) -> None:
    # Given a run that waits two seconds for an int, and nobody signals it
    event_id = await publish.aio("needs_count", {})
    run = await finished_run(store, event_id)
    # Then the flow got a clear error, and unhandled, it failed the run as USER
    assert run.phase == WorkflowPhase.FAILED and run.error is not None
    assert (run.error.kind, run.error.code) == (ErrorKind.USER, "SignalTimeoutError")
    assert "no signal for event 'count'" in run.error.message
    event = await asyncio.to_thread(Event.get, "count", run.name)
    assert event is not None and event.phase == "TIMED_OUT"
    with pytest.raises(SignalError, match="TIMED_OUT"):
        await asyncio.to_thread(event.signal, 3)


async def test_aborting_a_waiting_run_ends_the_wait_and_the_run_as_aborted(
    store: RunStore, engine_env: dict[str, str]
) -> None:
    event_id = await publish.aio("needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    done = await tripwire_cli(engine_env, "runs", "abort", run.name, "--cause", "not today")
    assert done.returncode == 0, done.stderr
    ended = await finished_run(store, event_id)
    assert ended.phase == WorkflowPhase.ABORTED
    event = await asyncio.to_thread(Event.get, "approval", run.name)
    assert event is not None and event.phase == "ABORTED"
    with pytest.raises(SignalError, match="ABORTED"):
        await asyncio.to_thread(event.signal, True)


async def test_the_cli_lists_and_signals_a_waiting_run(
    store: RunStore, engine_env: dict[str, str]
) -> None:
    event_id = await publish.aio("needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    listed = await tripwire_cli(engine_env, "events", "list", "--run", run.name, "--json")
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)
    assert (shown["name"], shown["phase"], shown["expected_type"]) == (
        "approval",
        "RUNNING",
        "bool",
    )
    table = await tripwire_cli(engine_env, "events", "list", "--run", run.name)
    assert "approval" in table.stdout and "RUNNING" in table.stdout
    # A value that is not the event's type is refused with an example
    bad = await tripwire_cli(
        engine_env, "events", "signal", "approval", "--run", run.name, "--value", "maybe"
    )
    assert bad.returncode == 2
    assert "expects a bool, and 'maybe' is not one; e.g. --value true" in bad.stderr
    unknown = await tripwire_cli(
        engine_env, "events", "signal", "approvl", "--run", run.name, "--value", "1"
    )
    assert unknown.returncode == 1
    assert "does not wait for an event 'approvl'" in unknown.stderr
    no_run = await tripwire_cli(engine_env, "events", "list", "--run", "no-such-run")
    assert no_run.returncode == 1 and "no run named 'no-such-run'" in no_run.stderr
    # When it is signalled from the command line
    given = await tripwire_cli(
        engine_env, "events", "signal", "approval", "--run", run.name, "--value", "true"
    )
    assert given.returncode == 0, given.stderr
    assert f"signalled approval=true to run {run.name}" in given.stdout
    assert (await finished_run(store, event_id)).phase == WorkflowPhase.SUCCEEDED
    assert signal_note(run.name).read_text() == "True"


async def test_a_signal_given_while_the_worker_is_down_reaches_the_run(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a worker process, and two runs waiting for approval
    logs = iter(tmp_path / f"worker-{n}.log" for n in range(2))

    def start_worker() -> tuple[subprocess.Popen[bytes], Path]:
        log = next(logs)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "sensors", "worker", str(FLOWS)],
                env={**os.environ, **engine_env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return process, log

    worker, log = start_worker()
    workers = [worker]
    try:
        await eventually(lambda: b"worker ready" in log.read_bytes(), "the worker", timeout=60)
        first = await publish.aio("needs_approval", {"table": "a"})
        second = await publish.aio("needs_approval", {"table": "b"})
        async with await RunStore.open(
            f"sqlite+aiosqlite:///{engine_env['TRIPWIRE_HOME']}/tripwire.db"
        ) as store:
            runs = [await waiting_run(store, e, "approval") for e in (first, second)]
            # When the worker dies, and the first run is signalled while it is down
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            given = await tripwire_cli(
                engine_env, "events", "signal", "approval", "--run", runs[0].name, "--value", "true"
            )
            assert given.returncode == 0, given.stderr
            # And a worker comes back, and then the second run is signalled
            worker, log = start_worker()
            workers.append(worker)
            await eventually(
                lambda: b"worker ready" in log.read_bytes(), "the new worker", timeout=60
            )
            assert Event.get("approval", runs[1].name).signal(False).phase == "SUCCEEDED"  # type: ignore[union-attr]
            # Then both runs got their value and succeeded, watched by the new worker
            for run, event_id, value in zip(runs, (first, second), ("True", "False"), strict=True):
                done = await finished_run(store, event_id)
                assert done.phase == WorkflowPhase.SUCCEEDED, done.error
                assert signal_note(run.name).read_text() == value
        assert b"taking it over" in log.read_bytes()
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
            process.wait(10)

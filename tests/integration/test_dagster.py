"""dagster:// against a real Dagster: its webserver and daemon (tests/fixtures/dagster.py)
serving examples/orchestrators/dagster/_definitions.py, each run a process of its own.

The tests drive the launcher with a real run store, and look at Dagster's side through
its GraphQL API.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sensors.launchers.dagster import DagsterLauncher
from sensors.launchers.dagster_api import RUN_TAG
from sensors.launchers.remote import Refused
from sensors.runs import history as runs_history
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.dagster import CRASHES, LOCATION, Dagster, dagster  # noqa: F401  (a fixture)
from tests.fixtures.runs import claimed_run, run_ended
from tests.fixtures.waits import eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration

LOAD_CONFIG = {"ops": {"load": {"config": {"day": "{day}", "rows": "{rows}"}}}}
_RUN = """query ($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { status jobName runConfig tags { key value } repositoryOrigin {
    repositoryLocationName } } } }"""
_LOGS = """query ($runId: ID!) { logsForRun(runId: $runId) { __typename
  ... on EventConnection { events { __typename ... on MessageEvent { message } } } } }"""
_LAUNCH = """mutation ($params: ExecutionParams!) { launchRun(executionParams: $params) {
  ... on LaunchRunSuccess { run { runId } } } }"""
_TAGGED = """query ($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
  ... on Runs { results { runId status } } } }"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as opened:
        yield opened


def launcher_of(store: RunStore, tmp_path: Path) -> DagsterLauncher:
    return DagsterLauncher(settings=Settings(home=tmp_path, remote_poll_interval=0.2), store=store)


@pytest.fixture
async def launcher(store: RunStore, tmp_path: Path) -> AsyncIterator[DagsterLauncher]:
    opened = launcher_of(store, tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


def target(server: Dagster, path: str) -> str:
    return f"{server.url.replace('http://', 'dagster://')}/{path}"


async def claimed(store: RunStore, target: str, **fields: Any) -> RunRecord:
    """A run of ``target`` that a worker has just claimed (RUNNING), with a unique name."""
    request = NewRun(
        project="p",
        domain="d",
        name=f"daily-load-{uuid.uuid4().hex[:12]}",
        flow="daily_load",
        sensor_id="daily_load.trigger",
        target=target,
        entrypoint={"function": "daily_load", "module": "flows"},
        parameters={"day": "2026-11-23", "rows": 5},
        events=[],
        **fields,
    )
    return await claimed_run(store, request)


async def the_link(store: RunStore, run: RunRecord) -> str:
    [attempt] = await runs_history.attempts(store, *run.key)
    assert attempt.link is not None
    return attempt.link


async def on_dagster(server: Dagster, link: str) -> dict[str, Any]:
    """What Dagster says of the run at ``link`` (``SERVER/runs/RUN_ID``)."""
    data = await asyncio.to_thread(server.graphql, _RUN, {"runId": link.rsplit("/", 1)[-1]})
    found: dict[str, Any] = data["runOrError"]
    return found


async def tagged(server: Dagster, name: str) -> list[dict[str, Any]]:
    """Dagster's runs tagged with the attempt ``name``."""
    tags = [{"key": RUN_TAG, "value": name}]
    data = await asyncio.to_thread(server.graphql, _TAGGED, {"tags": tags})
    found: list[dict[str, Any]] = data["runsOrError"]["results"]
    return found


async def test_a_run_launches_the_job_with_its_parameters_as_run_config_and_succeeds(
    dagster: Dagster,  # noqa: F811
    store: RunStore,
    launcher: DagsterLauncher,
) -> None:
    # Given a target that names no code location, and a run config template
    options = {"run_config": LOAD_CONFIG, "tags": {"team": "{day}"}}
    run = await claimed(store, target(dagster, "load_day"), target_options=options)
    # When the run is launched and followed to its end
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=90)
    # Then it succeeded, its attempt linked to the Dagster run's page
    assert done.phase == WorkflowPhase.SUCCEEDED, done.error
    link = await the_link(store, run)
    assert link.startswith(f"{dagster.url}/runs/")
    moves = [c.phase for c in await runs_history.history(store, *run.key) if c.attempt == 1]
    # (its op takes a moment: the looks may all fall before and after it runs)
    assert moves in (["INITIALIZING", "RUNNING", "SUCCEEDED"], ["INITIALIZING", "SUCCEEDED"])
    # and Dagster ran the job of the location it has, with the parameters in their types
    seen = await on_dagster(dagster, link)
    assert (seen["status"], seen["jobName"]) == ("SUCCESS", "load_day")
    assert seen["repositoryOrigin"]["repositoryLocationName"] == LOCATION
    assert seen["runConfig"] == {"ops": {"load": {"config": {"day": "2026-11-23", "rows": 5}}}}
    tags = {t["key"]: t["value"] for t in seen["tags"]}
    assert tags[RUN_TAG] == run.name and tags["team"] == "2026-11-23"
    logs = await asyncio.to_thread(dagster.graphql, _LOGS, {"runId": link.rsplit("/", 1)[-1]})
    messages = [e.get("message", "") for e in logs["logsForRun"]["events"]]
    assert "loading 5 rows of 2026-11-23" in messages


async def test_a_job_whose_op_raised_fails_the_run_as_user_with_the_error(
    dagster: Dagster,  # noqa: F811
    store: RunStore,
    launcher: DagsterLauncher,
) -> None:
    run_config = {"ops": {"load_or_fail": {"config": {"day": "{day}"}}}}
    run = await claimed(
        store,
        target(dagster, f"{LOCATION}/load_day_broken"),
        target_options={"run_config": run_config},
    )
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.USER, "StepFailed")
    assert "op load_or_fail: ValueError: no data landed for 2026-11-23" in done.error.message
    assert (await on_dagster(dagster, await the_link(store, run)))["status"] == "FAILURE"


async def test_a_run_worker_stopped_by_a_signal_fails_the_run_as_system(
    dagster: Dagster,  # noqa: F811
    store: RunStore,
    launcher: DagsterLauncher,
) -> None:
    run = await claimed(store, target(dagster, f"{CRASHES}/crash"))
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.SYSTEM, "RunInterrupted")
    assert "UNEXPECTED_TERMINATION" in done.error.message


async def test_abort_terminates_the_dagster_run(
    dagster: Dagster,  # noqa: F811
    store: RunStore,
    launcher: DagsterLauncher,
) -> None:
    run = await claimed(store, target(dagster, f"{LOCATION}/wait_long"))
    await launcher.launch(run)

    async def running() -> bool:
        attempts = await runs_history.attempts(store, *run.key)
        return bool(attempts) and attempts[0].phase == AttemptPhase.RUNNING

    await eventually(running, "the Dagster run to start", timeout=60)
    await store.request_abort("p", "d", run.name, "wrong day")
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.ABORTED
    link = await the_link(store, run)

    async def canceled() -> bool:
        return (await on_dagster(dagster, link))["status"] == "CANCELED"

    await eventually(canceled, "Dagster to cancel the run", timeout=60)
    await launcher.stop(run, run.name)  # again: nothing left to stop, and no error


async def test_a_replayed_create_launches_no_second_dagster_run(
    dagster: Dagster,  # noqa: F811
    store: RunStore,
    launcher: DagsterLauncher,
) -> None:
    options = {"run_config": LOAD_CONFIG}
    run = await claimed(store, target(dagster, f"{LOCATION}/load_day"), target_options=options)
    first = await launcher.create(run, run.name)
    again = await launcher.create(run, run.name)  # a worker that died after creating it
    assert again == first
    assert [first.rsplit("/", 1)[-1]] == [r["runId"] for r in await tagged(dagster, run.name)]


async def test_two_workers_that_both_launched_an_attempt_keep_the_older_run(
    dagster: Dagster,  # noqa: F811
    store: RunStore,
    launcher: DagsterLauncher,
    tmp_path: Path,
) -> None:
    # Given two Dagster runs of one attempt: two workers looked it up before either had
    # launched it (one took the attempt over while the other's launch was under way)
    run = await claimed(store, target(dagster, f"{LOCATION}/wait_long"))
    tags = [
        {"key": RUN_TAG, "value": run.name},
        {"key": "tripwire/project", "value": "p"},
        {"key": "tripwire/domain", "value": "d"},
    ]
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "jobName": "wait_long",
    }
    params = {"selector": selector, "executionMetadata": {"tags": tags}}
    launched = []
    for _ in range(2):
        data = await asyncio.to_thread(dagster.graphql, _LAUNCH, {"params": params})
        launched.append(data["launchRun"]["run"]["runId"])
    # When each worker looks at it
    other = launcher_of(store, tmp_path)
    try:
        link = await launcher.create(run, run.name)
        seen = await other.observe(run, run.name)
    finally:
        await other.close()
    # Then both follow the older run, and the other is terminated
    assert link == seen.link == f"{dagster.url}/runs/{launched[0]}"

    async def duplicate_canceled() -> bool:
        return (await on_dagster(dagster, f"/{launched[1]}"))["status"] == "CANCELED"

    await eventually(duplicate_canceled, "the duplicate to be canceled", timeout=30)
    await launcher.stop(run, run.name)


async def test_what_dagster_rejects_is_refused_saying_what_to_fix(
    dagster: Dagster,  # noqa: F811
    store: RunStore,
    launcher: DagsterLauncher,
) -> None:
    cases = [
        ("no_such_job", {}, "JobNotFound", "no code location of"),
        ("wait_long", {}, "JobAmbiguous", f"code locations {LOCATION}, {CRASHES}"),
        ("nowhere/load_day", {}, "JobNotFound", "Could not find Pipeline nowhere."),
        (
            f"{LOCATION}/load_day",
            {"run_config": {"ops": {"load": {"config": {"days": "{day}"}}}}},
            "RunConfigInvalid",
            'unexpected config entry "days"',
        ),
        (f"{LOCATION}/load_day", {"repository": "etl"}, "JobNotFound", "repository"),
    ]
    for path, options, code, says in cases:
        run = await claimed(store, target(dagster, path), target_options=options)
        with pytest.raises(Refused) as refused:
            await launcher.create(run, run.name)
        assert (refused.value.code, path) == (code, path), refused.value.message
        assert says in refused.value.message, refused.value.message
        assert await tagged(dagster, run.name) == []

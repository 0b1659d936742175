"""airflow:// against a real Airflow 3: AirflowLauncher, driven as a worker drives it,
triggers and follows DAG runs of the example's DAG (load_day), which Airflow's scheduler
runs (tests/fixtures/airflow.py). Every call logs in as the fixture's user, with the
user and password from the worker's environment, as the example's target says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensors.launchers.airflow import ABORT_NOTE, AirflowLauncher
from sensors.launchers.remote import Refused
from sensors.registry import discover_flows
from sensors.runs import history as runs_history
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.airflow import (  # noqa: F401  (the fixture airflow_server)
    DAG_ID,
    DAGS,
    USER,
    AirflowServer,
    started_airflow,
)
from tests.fixtures.runs import attempt_is, claimed_run, new_run, run_ended
from tests.fixtures.waits import eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration

EXAMPLE = DAGS.parent / "flows.py"
SLOW = {"day": "2026-11-23", "rows": 600, "pause": 0.1}  # a minute, unless stopped


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as opened:
        yield opened


@pytest.fixture
def example() -> tuple[str, dict[str, Any]]:
    """The example flow's target and options, as they are deployed."""
    [spec] = discover_flows([EXAMPLE])
    return spec.target, dict(spec.target_options or {})


@pytest.fixture
async def launcher(
    airflow_server: AirflowServer,
    store: RunStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[AirflowLauncher]:
    # the worker's environment, as the example's target names it
    monkeypatch.setenv("AIRFLOW_USERNAME", USER)
    monkeypatch.setenv("AIRFLOW_PASSWORD", airflow_server.password)
    settings = Settings(
        home=tmp_path, airflow_url=airflow_server.url, remote_poll_interval=0.2, system_retries=0
    )
    launcher = AirflowLauncher(settings=settings, store=store)
    yield launcher
    await launcher.close()


@pytest.fixture
async def airflow(airflow_server: AirflowServer) -> AsyncIterator[httpx.AsyncClient]:
    """The tests' own client of Airflow's API."""
    async with httpx.AsyncClient(
        base_url=f"{airflow_server.url}/api/v2/",
        headers={"Authorization": f"Bearer {airflow_server.token()}"},
        timeout=30,
    ) as client:
        yield client


async def claimed(
    store: RunStore, example: tuple[str, dict[str, Any]], parameters: dict[str, Any], **fields: Any
) -> RunRecord:
    """A new run of the example's target, claimed by a worker (RUNNING), under a name of its
    own: the server, and so its DAG run ids, outlive each test."""
    target, options = example
    name = f"load-day-{uuid.uuid4().hex[:12]}"
    request = new_run(name).model_copy(
        update={
            "target": target,
            "target_options": options,
            "parameters": parameters,
            **fields,
        }
    )
    return await claimed_run(store, request)


def options_without_conf(example: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in example[1].items() if k != "conf"}


async def dag_runs(airflow: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Every DAG run of the example's DAG, by id."""
    answer = await airflow.get(f"dags/{DAG_ID}/dagRuns", params={"limit": 1000})
    answer.raise_for_status()
    return {r["dag_run_id"]: r for r in answer.json()["dag_runs"]}


async def task_states(airflow: httpx.AsyncClient, dag_run_id: str) -> dict[str, str | None]:
    answer = await airflow.get(f"dags/{DAG_ID}/dagRuns/{dag_run_id}/taskInstances")
    answer.raise_for_status()
    return {ti["task_id"]: ti["state"] for ti in answer.json()["task_instances"]}


async def test_a_run_triggers_a_dag_run_with_its_conf_and_follows_it_to_success(
    launcher: AirflowLauncher,
    store: RunStore,
    airflow: httpx.AsyncClient,
    airflow_server: AirflowServer,
    example: tuple[str, dict[str, Any]],
) -> None:
    # Given a run of the example's flow, whose target maps day and rows into the conf
    run = await claimed(store, example, {"day": "2026-11-23", "rows": 5})
    # When a worker launches it
    await launcher.launch(run)
    await eventually(lambda: attempt_is(store, run, AttemptPhase.RUNNING), "a RUNNING attempt")
    done = await run_ended(store, run, timeout=120)
    # Then the run succeeded as its DAG run did, which ran with the mapped conf
    assert done.phase == WorkflowPhase.SUCCEEDED, done.error
    dag_run = (await dag_runs(airflow))[run.name]
    assert dag_run["state"] == "success" and dag_run["run_type"] == "manual"
    assert dag_run["conf"] == {"day": "2026-11-23", "rows": 5}
    assert dag_run["note"].startswith(f"started by tripwire: run {run.name}")
    xcom = await airflow.get(
        f"dags/{DAG_ID}/dagRuns/{run.name}/taskInstances/load/xcomEntries/return_value"
    )
    assert xcom.json()["value"] == "loaded 5 rows of 2026-11-23"
    [attempt] = await runs_history.attempts(store, *run.key)
    assert attempt.link == f"{airflow_server.url}/dags/{DAG_ID}/runs/{run.name}"


async def test_a_replayed_create_finds_the_dag_run_it_made_and_makes_no_second(
    launcher: AirflowLauncher,
    store: RunStore,
    airflow: httpx.AsyncClient,
    example: tuple[str, dict[str, Any]],
) -> None:
    run = await claimed(store, example, {"day": "2026-11-24", "rows": 1})
    # Given the attempt's DAG run, created by a worker that died before it said so
    first = await launcher.create(run, run.name)
    # When it is created again, by a replay and then by the worker that launches the run
    again = await launcher.create(run, run.name)
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=120)
    # Then there is one DAG run of that id, and the run followed it to its end
    assert first == again
    ids = [i for i in await dag_runs(airflow) if i.startswith(run.name)]
    assert ids == [run.name]
    assert done.phase == WorkflowPhase.SUCCEEDED, done.error
    [attempt] = await runs_history.attempts(store, *run.key)
    assert attempt.link == first


async def test_a_task_that_fails_fails_the_run_as_user_naming_the_task(
    launcher: AirflowLauncher,
    store: RunStore,
    airflow: httpx.AsyncClient,
    example: tuple[str, dict[str, Any]],
) -> None:
    # Given a run whose conf makes the DAG's task `check` raise
    run = await claimed(store, example, {"day": "2026-11-25", "rows": -1})
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=120)
    # Then the run failed as a USER failure that names the task, and was not retried
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.USER, "DagRunFailed")
    assert "task check failed" in done.error.message
    assert await task_states(airflow, run.name) == {"check": "failed", "load": "upstream_failed"}
    assert [a.phase for a in await runs_history.attempts(store, *run.key)] == [AttemptPhase.FAILED]


async def test_abort_marks_the_dag_run_failed_with_a_note_that_says_why(
    launcher: AirflowLauncher,
    store: RunStore,
    airflow: httpx.AsyncClient,
    airflow_server: AirflowServer,
    example: tuple[str, dict[str, Any]],
) -> None:
    # Given a run whose DAG run's task `load` is under way, slowly: without a conf
    # template, the conf is the flow's parameters, pause and all
    target, _ = example
    run = await claimed(store, (target, options_without_conf(example)), SLOW)
    await launcher.launch(run)
    await eventually(lambda: attempt_is(store, run, AttemptPhase.RUNNING), "a RUNNING attempt")

    async def loading() -> bool:
        return (await task_states(airflow, run.name)).get("load") == "running"

    await eventually(loading, "task load to run", timeout=60)
    # When it is aborted
    await store.request_abort("p", "d", run.name, "wrong day")
    done = await run_ended(store, run, timeout=120)
    # Then the run is ABORTED, and Airflow has the DAG run failed, with a note saying why
    assert done.phase == WorkflowPhase.ABORTED
    dag_run = (await dag_runs(airflow))[run.name]
    assert dag_run["state"] == "failed" and dag_run["conf"] == SLOW
    assert dag_run["note"] == f"{ABORT_NOTE}: run {run.name} was aborted (wrong day)"

    # and Airflow terminated its task process, long before its minute was up
    assert (await task_states(airflow, run.name))["load"] == "failed"
    task_log = (
        airflow_server.home / f"logs/dag_id={DAG_ID}/run_id={run.name}/task_id=load/attempt=1.log"
    )

    def stopped() -> bool:
        return task_log.exists() and "Terminating process" in task_log.read_text()

    await eventually(stopped, f"the task to stop ({task_log})", timeout=30)


async def test_a_paused_dag_refuses_the_attempt_and_gets_no_dag_run(
    launcher: AirflowLauncher,
    store: RunStore,
    airflow: httpx.AsyncClient,
    example: tuple[str, dict[str, Any]],
) -> None:
    # Given the DAG, paused (as Airflow pauses a new DAG unless told otherwise)
    run = await claimed(store, example, {"day": "2026-11-26", "rows": 1})
    (await airflow.patch(f"dags/{DAG_ID}", json={"is_paused": True})).raise_for_status()
    try:
        # When a run of it is launched
        await launcher.launch(run)
        done = await run_ended(store, run, timeout=120)
    finally:
        (await airflow.patch(f"dags/{DAG_ID}", json={"is_paused": False})).raise_for_status()
    # Then it fails at once (SYSTEM, not retried), saying how to unpause the DAG, and
    # leaves no queued DAG run behind to start when someone does
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.SYSTEM, "DagPaused")
    assert f"airflow dags unpause {DAG_ID}" in done.error.message
    assert run.name not in await dag_runs(airflow)


def signed(claims: dict[str, Any], secret: str) -> str:
    """A JWT of ``claims``, signed with ``secret`` (HS512, as Airflow signs its tokens)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    head = part(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha512).digest()
    return f"{head}.{body}.{part(mac)}"


@pytest.mark.parametrize(
    ("why", "ago", "key"),
    [
        # Airflow answers 401 "Token Expired": the worker's clock is behind the server's
        ("expired", 120, None),
        # and 403 "Invalid JWT token": the server's jwt_secret changed since
        ("signed with another secret", -3600, "another secret, as long as Airflow's wants"),
    ],
)
async def test_a_token_the_server_refuses_is_replaced_by_a_new_one(
    launcher: AirflowLauncher,
    store: RunStore,
    airflow_server: AirflowServer,
    example: tuple[str, dict[str, Any]],
    why: str,
    ago: int,
    key: str | None,
) -> None:
    # Given a worker holding a token that the server does not take any more, which the
    # worker believes good for an hour
    now = int(time.time())
    claims: dict[str, Any] = {"sub": USER, "role": "admin", "aud": "apache-airflow", "jti": why}
    claims |= {"iat": now - 3600 - ago, "nbf": now - 3600 - ago, "exp": now - ago}
    stale = signed(claims, key or airflow_server.jwt_secret)
    launcher._tokens[(airflow_server.url, USER)] = (stale, now + 3600.0)
    # When it looks at a DAG run (of a run that has none)
    run = await claimed(store, example, {"day": "2026-11-27", "rows": 1})
    seen = await launcher.observe(run, run.name)
    # Then it logged in again and got Airflow's answer
    assert seen.error is not None and seen.error.code == "DagRunMissing", seen
    assert launcher._tokens[(airflow_server.url, USER)][0] != stale


async def test_a_wrong_password_refuses_naming_the_variables_that_hold_it(
    launcher: AirflowLauncher,
    store: RunStore,
    example: tuple[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_PASSWORD", "not-it")
    run = await claimed(store, example, {"day": "2026-11-28", "rows": 1})
    with pytest.raises(Refused) as refused:
        await launcher.create(run, run.name)
    assert refused.value.code == "Airflow401"
    assert "$AIRFLOW_USERNAME" in refused.value.message
    assert "$AIRFLOW_PASSWORD" in refused.value.message

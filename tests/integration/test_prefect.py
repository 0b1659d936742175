"""prefect:// against a real Prefect 3 server: PrefectLauncher, driven as a worker drives it,
creates and follows flow runs of the example's deployment (load-day/nightly), which a
``serve`` process runs (tests/fixtures/prefect.py). The server wants basic auth, so every
call here also checks ``auth_string_env``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from sensors.launchers.prefect import PrefectLauncher
from sensors.launchers.remote import Unreachable
from sensors.registry import discover_flows
from sensors.runs import history as runs_history
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.prefect import (  # noqa: F401  (the fixture prefect_server)
    SERVE,
    PrefectServer,
    started_prefect,
)
from tests.fixtures.runs import attempt_is, claimed_run, new_run, run_ended
from tests.fixtures.waits import eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration

EXAMPLE = SERVE.parent / "flows.py"
AUTH = "TRIPWIRE_TEST_PREFECT_AUTH"  # the worker's variable with the server's user:password
NIGHTLY = "prefect:///load-day/nightly"
SLOW = {"day": "2026-11-23", "rows": 600, "pause": 0.1}  # a minute, unless stopped
T = TypeVar("T")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as opened:
        yield opened


@pytest.fixture
async def launcher(
    prefect_server: PrefectServer,
    store: RunStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[PrefectLauncher]:
    monkeypatch.setenv(AUTH, prefect_server.auth)
    settings = Settings(
        home=tmp_path, prefect_url=prefect_server.api, remote_poll_interval=0.2, system_retries=0
    )
    launcher = PrefectLauncher(settings=settings, store=store)
    yield launcher
    await launcher.close()


@pytest.fixture
async def prefect(prefect_server: PrefectServer) -> AsyncIterator[httpx.AsyncClient]:
    """The tests' own client of the Prefect API."""
    user, password = prefect_server.auth.split(":", 1)
    async with httpx.AsyncClient(
        base_url=prefect_server.api + "/",
        auth=(user, password),
        timeout=30,
        transport=_AskingAgain(),
    ) as client:
        yield client


class _AskingAgain(httpx.AsyncHTTPTransport):
    """Asks again when Prefect answers 503: its SQLite is busy when two writers collide
    (serve writes too), and Prefect's own client asks again then, as the launcher does at
    its next look."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + 30
        while True:
            response = await super().handle_async_request(request)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
            await response.aclose()
            await asyncio.sleep(0.2)


async def answered(call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` of the launcher, asked again while Prefect cannot answer (see
    :class:`_AskingAgain`), as the launcher's loop asks again at its next look."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await call()
        except Unreachable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def claimed(
    store: RunStore,
    parameters: dict[str, Any],
    *,
    target: str = NIGHTLY,
    options: dict[str, Any] | None = None,
    **fields: Any,
) -> RunRecord:
    """A new run of ``target``, claimed by a worker (RUNNING), under a name of its own:
    the server, and so its idempotency keys, outlive each test."""
    name = f"load-day-{uuid.uuid4().hex[:12]}"
    request = new_run(name).model_copy(
        update={
            "target": target,
            "target_options": {"auth_string_env": AUTH, **(options or {})},
            "parameters": parameters,
            **fields,
        }
    )
    return await claimed_run(store, request)


async def flow_runs(prefect: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    """The flow runs whose idempotency key is ``key``."""
    query = {"flow_runs": {"idempotency_key": {"any_": [key]}}}
    response = await prefect.post("flow_runs/filter", json=query)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


async def state_is(prefect: httpx.AsyncClient, key: str, wanted: str) -> bool:
    """Whether the one flow run of idempotency key ``key`` is in a state of type ``wanted``."""
    [flow_run] = await flow_runs(prefect, key)
    return bool(flow_run["state_type"] == wanted)


async def test_the_example_starts_a_flow_run_with_its_mapped_parameters_that_succeeds(
    launcher: PrefectLauncher,
    store: RunStore,
    prefect: httpx.AsyncClient,
    prefect_server: PrefectServer,
) -> None:
    # Given the example's flow: its target and options as they are deployed
    [spec] = discover_flows([EXAMPLE])
    assert spec.target == NIGHTLY
    run = await claimed(
        store, {"day": "2026-11-23", "rows": 5}, options=dict(spec.target_options or {})
    )
    # When a worker launches a run of it
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=90)
    # Then the run succeeded as its flow run did, which has the mapped parameters
    assert done.phase == WorkflowPhase.SUCCEEDED, done.error
    [flow_run] = await flow_runs(prefect, run.name)
    assert flow_run["name"] == run.name and flow_run["state_type"] == "COMPLETED"
    assert flow_run["parameters"] == {"day": "2026-11-23", "rows": 5}
    assert "tripwire" in flow_run["tags"]
    [attempt] = await runs_history.attempts(store, *run.key)
    ui = prefect_server.api.removesuffix("/api")
    assert attempt.link == f"{ui}/runs/flow-run/{flow_run['id']}"


async def test_a_replayed_create_finds_the_flow_run_it_made_and_makes_no_second(
    launcher: PrefectLauncher,
    store: RunStore,
    prefect: httpx.AsyncClient,
    prefect_server: PrefectServer,
    tmp_path: Path,
) -> None:
    run = await claimed(store, {"day": "2026-11-23", "rows": 1})
    first = await answered(lambda: launcher.create(run, run.name))
    # A worker that died after the call, or a replayed request: the same attempt name again
    again = await answered(lambda: launcher.create(run, run.name))
    assert again == first
    # And another worker, which knows nothing of the first, finds the flow run by its key
    other = PrefectLauncher(
        settings=Settings(home=tmp_path, prefect_url=prefect_server.api), store=store
    )
    try:
        seen = await answered(lambda: other.observe(run, run.name))
    finally:
        await other.close()
    assert seen.link == first
    [flow_run] = await flow_runs(prefect, run.name)
    assert first is not None and first.endswith(flow_run["id"])
    await eventually(
        lambda: state_is(prefect, run.name, "COMPLETED"), "the flow run to end", timeout=90
    )


async def test_a_flow_that_raises_fails_as_user_and_its_retry_is_a_second_flow_run(
    launcher: PrefectLauncher, store: RunStore, prefect: httpx.AsyncClient
) -> None:
    run = await claimed(store, {"day": "2026-11-23", "rows": -1}, retries=1)
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.USER, "FlowRunFailed")
    assert "rows must be 0 or more, not -1" in done.error.message
    first, second = await runs_history.attempts(store, *run.key)
    assert first.phase == AttemptPhase.RETRYABLE_FAILED and second.phase == AttemptPhase.FAILED
    assert [r["state_type"] for r in await flow_runs(prefect, f"{run.name}-a2")] == ["FAILED"]
    assert first.link != second.link


async def test_abort_cancels_the_running_flow_run(
    launcher: PrefectLauncher, store: RunStore, prefect: httpx.AsyncClient
) -> None:
    run = await claimed(store, SLOW)
    await launcher.launch(run)
    await eventually(lambda: attempt_is(store, run, AttemptPhase.RUNNING), "RUNNING", timeout=60)
    await store.request_abort("p", "d", run.name, "wrong day")
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.ABORTED
    # serve stops the flow run's process and ends it CANCELLED
    await eventually(
        lambda: state_is(prefect, run.name, "CANCELLED"), "CANCELLED in Prefect", timeout=60
    )


async def test_abort_cancels_a_flow_run_that_nothing_picked_up_at_once(
    launcher: PrefectLauncher, store: RunStore, prefect: httpx.AsyncClient
) -> None:
    # Given a deployment that no process serves: its flow runs stay SCHEDULED
    nightly = (await prefect.get("deployments/name/load-day/nightly")).json()
    unserved = {"name": f"unserved-{uuid.uuid4().hex[:8]}", "flow_id": nightly["flow_id"]}
    (await prefect.post("deployments/", json=unserved)).raise_for_status()
    run = await claimed(
        store, {"day": "2026-11-23"}, target=f"prefect:///load-day/{unserved['name']}"
    )
    await launcher.launch(run)
    await eventually(lambda: flow_runs(prefect, run.name), "the flow run")
    assert await attempt_is(store, run, AttemptPhase.INITIALIZING)
    await store.request_abort("p", "d", run.name, "not needed")
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.ABORTED
    # Prefect itself turns the unforced CANCELLING of a run with no process into CANCELLED
    assert await state_is(prefect, run.name, "CANCELLED")


async def test_a_flow_run_whose_process_is_killed_crashes_and_fails_as_system(
    launcher: PrefectLauncher, store: RunStore, prefect_server: PrefectServer
) -> None:
    # serve runs each flow run in a child process: the one that is new once this one runs
    before = _children(prefect_server.serve_pid)
    run = await claimed(store, SLOW)
    await launcher.launch(run)
    await eventually(lambda: attempt_is(store, run, AttemptPhase.RUNNING), "RUNNING", timeout=60)
    [process] = _children(prefect_server.serve_pid) - before
    # When it dies (the OOM killer, say)
    os.kill(process, signal.SIGKILL)
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.SYSTEM, "FlowRunCrashed")
    assert "SIGKILL" in done.error.message


async def test_an_unknown_deployment_fails_the_run_at_once_without_retries(
    launcher: PrefectLauncher, store: RunStore
) -> None:
    run = await claimed(store, {"day": "2026-11-23"}, target="prefect:///load-day/nope", retries=2)
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.SYSTEM, "DeploymentNotFound")
    assert "load-day/nope" in done.error.message
    assert len(await runs_history.attempts(store, *run.key)) == 1


async def test_wrong_credentials_are_refused_naming_them(
    launcher: PrefectLauncher, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTH, "tripwire:wrong")
    run = await claimed(store, {"day": "2026-11-23"})
    await launcher.launch(run)
    done = await run_ended(store, run, timeout=90)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert done.error.code == "Prefect401" and "credentials" in done.error.message


def _children(pid: int) -> set[int]:
    """The processes that ``pid`` started and that run."""
    return {
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    }

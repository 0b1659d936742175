"""flyte:// on a Flyte backend, against a stand-in of the one class that calls the SDK
(:class:`~sensors.launchers.flyte.FlyteSdk`): no Flyte backend runs here. What the stand-in
takes the place of: task look-up by name and version, input upload, CreateRun and its
ALREADY_EXISTS, the run's phases and error kinds, and AbortRun (docs/orchestrators/flyte.md).
Flyte's local mode runs for real in tests/integration/test_flyte.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sensors.launchers.flyte import FlyteLauncher, flyte_name, flyte_task
from sensors.launchers.remote import Refused
from sensors.queries.runs import run_detail
from sensors.runs import history as runs_history
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.runs import claimed_run, run_ended
from tests.fixtures.waits import eventually
from triggers.settings import Settings
from triggers.targets import parse_target


@dataclass
class Run:
    phase: str = "queued"
    url: str | None = None
    error: str | None = None
    system: bool = False


@dataclass
class Backend:
    """A Flyte backend as the launcher sees it: runs by (project, domain, name)."""

    tasks: set[str] = field(default_factory=lambda: {"orders.load_day"})
    runs: dict[tuple[str | None, str | None, str], Run] = field(default_factory=dict)
    started: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)

    async def start(
        self,
        task: str,
        project: str | None,
        domain: str | None,
        name: str,
        inputs: dict[str, Any],
        version: str | None,
    ) -> str | None:
        if task not in self.tasks:
            raise Refused("TaskNotFound", f"no task {task!r}")
        if (project, domain, name) in self.runs:
            return None  # RunAlreadyExistsError: a replay
        url = f"https://flyte.example/v2/domain/{domain}/project/{project}/runs/{name}"
        self.runs[project, domain, name] = Run(url=url)
        self.started.append((name, inputs, version))
        return url

    async def get(self, project: str | None, domain: str | None, name: str) -> Run:
        return self.runs[project, domain, name]

    async def abort(self, project: str | None, domain: str | None, name: str) -> None:
        self.aborted.append(name)
        self.runs[project, domain, name].phase = "aborted"


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
async def launcher(tmp_path: Path, backend: Backend) -> AsyncIterator[FlyteLauncher]:
    settings = Settings(home=tmp_path, remote_poll_interval=0.02, system_retries=1)
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as store:
        started = FlyteLauncher(settings=settings, store=store, remote=backend)
        try:
            yield started
        finally:
            await started.close()


async def claimed(launcher: FlyteLauncher, url: str, **options: Any) -> RunRecord:
    spec = parse_target(url, options, ["day", "rows"])
    request = NewRun(
        project="p",
        domain="d",
        name="load-orders-0123456789abcdef0123",  # 32 characters: over Flyte's 30
        flow="load_orders",
        sensor_id="load_orders.trigger",
        target=spec.url,
        target_options=spec.options,
        entrypoint={"function": "load_orders", "module": "flows"},
        parameters={"day": "2026-12-01", "rows": 5},
        events=[],
    )
    return await claimed_run(launcher._store, request)


def test_a_flyte_run_name_fits_flytes_thirty_characters_and_is_the_same_for_a_replay() -> None:
    assert flyte_name("load-orders-ab12") == "load-orders-ab12"
    long = "load-orders-0123456789abcdef0123-a2"
    assert len(flyte_name(long)) <= 30 and flyte_name(long) == flyte_name(long)
    assert flyte_name(long) != flyte_name(long.replace("-a2", "-a3"))


def test_a_target_names_its_project_and_domain_or_leaves_them_to_the_flyte_config() -> None:
    assert flyte_task("flyte://flytesnacks/development/orders.load_day") == (
        "flytesnacks",
        "development",
        "orders.load_day",
    )
    assert flyte_task("flyte://orders.load_day") == (None, None, "orders.load_day")


async def test_a_run_follows_the_flyte_runs_phases_to_success(
    launcher: FlyteLauncher, backend: Backend
) -> None:
    run = await claimed(launcher, "flyte://flytesnacks/development/orders.load_day")
    await launcher.launch(run)
    name = flyte_name(run.name)
    key = ("flytesnacks", "development", name)
    await eventually(lambda: key in backend.runs, "the Flyte run")
    backend.runs[key].phase = "waiting_for_resources"
    await eventually(
        lambda: _attempt_is(launcher, run, AttemptPhase.WAITING_FOR_RESOURCES), "waiting"
    )
    backend.runs[key].phase = "running"
    await eventually(lambda: _attempt_is(launcher, run, AttemptPhase.RUNNING), "running")
    backend.runs[key].phase = "succeeded"
    done = await run_ended(launcher._store, run, timeout=10)
    assert done.phase == WorkflowPhase.SUCCEEDED
    assert backend.started == [(name, {"day": "2026-12-01", "rows": 5}, None)]
    [attempt] = await runs_history.attempts(launcher._store, *run.key)
    assert attempt.link == backend.runs[key].url
    # and `runs get` lists it where a run's logs are
    detail = await run_detail(launcher._store, run.name, project="p", domain="d")
    assert [(log.name, log.uri) for log in detail.logs] == [
        ("flyte run of attempt 1", backend.runs[key].url)
    ]


async def test_a_replayed_create_starts_no_second_flyte_run(
    launcher: FlyteLauncher, backend: Backend
) -> None:
    run = await claimed(launcher, "flyte://orders.load_day", inputs={"day": "{day}"})
    assert await launcher.create(run, run.name) is not None
    assert await launcher.create(run, run.name) is None  # it exists: followed, not started
    assert backend.started == [(flyte_name(run.name), {"day": "2026-12-01"}, None)]


async def test_abort_aborts_the_flyte_run(launcher: FlyteLauncher, backend: Backend) -> None:
    run = await claimed(launcher, "flyte://orders.load_day", version="v7")
    await launcher.launch(run)
    await eventually(lambda: backend.started, "the Flyte run")
    await launcher._store.request_abort("p", "d", run.name, "wrong day")
    done = await run_ended(launcher._store, run, timeout=10)
    assert done.phase == WorkflowPhase.ABORTED
    assert backend.aborted == [flyte_name(run.name)]
    assert backend.started[0][2] == "v7"


async def test_a_failure_of_the_system_is_retried_and_one_of_the_task_is_not(
    launcher: FlyteLauncher, backend: Backend
) -> None:
    run = await claimed(launcher, "flyte://orders.load_day")
    await launcher.launch(run)
    first = (None, None, flyte_name(run.name))
    await eventually(lambda: first in backend.runs, "the first Flyte run")
    backend.runs[first] = Run(phase="failed", error="node lost", system=True)
    second = (None, None, flyte_name(f"{run.name[:58]}-a2"))
    await eventually(lambda: second in backend.runs, "the retry's Flyte run")
    backend.runs[second] = Run(phase="failed", error="ValueError: bad day")
    done = await run_ended(launcher._store, run, timeout=10)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert done.error.kind == ErrorKind.USER and "bad day" in done.error.message
    one, two = await runs_history.attempts(launcher._store, *run.key)
    assert one.error is not None and one.error.kind == ErrorKind.SYSTEM
    assert one.phase == AttemptPhase.RETRYABLE_FAILED and two.phase == AttemptPhase.FAILED


async def test_a_task_the_backend_does_not_have_fails_at_once(
    launcher: FlyteLauncher, backend: Backend
) -> None:
    run = await claimed(launcher, "flyte://orders.load_nothing")
    await launcher.launch(run)
    done = await run_ended(launcher._store, run, timeout=10)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.SYSTEM, "TaskNotFound")
    assert len(await runs_history.attempts(launcher._store, *run.key)) == 1


async def _attempt_is(launcher: FlyteLauncher, run: RunRecord, phase: AttemptPhase) -> bool:
    attempts = await runs_history.attempts(launcher._store, *run.key)
    return bool(attempts) and attempts[-1].phase == phase

"""flyte:// in Flyte's local mode, with the real Flyte 2 SDK (in .venv-flyte): a run to
success with its inputs, a failure of the task, an abort, and a replayed create."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sensors.launchers.flyte import FlyteLauncher
from sensors.launchers.process import pid_alive, run_dir
from sensors.runs import history as runs_history
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.flyte import flyte_python
from tests.fixtures.runs import claimed_run, run_ended
from tests.fixtures.waits import eventually
from triggers.settings import Settings
from triggers.targets import parse_target

pytestmark = pytest.mark.integration

TASKS = Path(__file__).parent / "flyte_tasks" / "_tasks.py"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the test task notes each of its runs (it inherits the worker's environment)."""
    path = tmp_path / "ledger"
    monkeypatch.setenv("FLYTE_TEST_LEDGER", str(path))
    return path


@pytest.fixture
async def launcher(tmp_path: Path) -> AsyncIterator[FlyteLauncher]:
    settings = Settings(home=tmp_path, remote_poll_interval=0.1)
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as store:
        started = FlyteLauncher(settings=settings, store=store)
        try:
            yield started
        finally:
            await started.close()


async def claimed(launcher: FlyteLauncher, task: str, **parameters: Any) -> RunRecord:
    """A claimed run of ``task`` (in tests/integration/flyte_tasks), in local mode."""
    options = {"mode": "local", "module": str(TASKS), "python": str(flyte_python())}
    spec = parse_target(f"flyte://tests.{task}", options, ["day", "rows"])
    request = NewRun(
        project="p",
        domain="d",
        name=f"orders-{task.replace('_', '-')}-0123456789abcdef",
        flow="orders",
        sensor_id="orders.trigger",
        target=spec.url,
        target_options=spec.options,
        entrypoint={"function": "orders", "module": "flows"},
        parameters=parameters,
        events=[],
    )
    return await claimed_run(launcher._store, request)


async def test_a_run_is_a_local_flyte_run_of_the_task_with_the_parameters_as_inputs(
    launcher: FlyteLauncher, ledger: Path
) -> None:
    run = await claimed(launcher, "load_day", day="2026-12-01", rows=5)
    await launcher.launch(run)
    done = await run_ended(launcher._store, run, timeout=60)
    assert done.phase == WorkflowPhase.SUCCEEDED, done.error
    report = {"run": run.name, "task": "tests.load_day", "outputs": ["loaded 5 rows of 2026-12-01"]}
    assert done.outputs == {"flyte": report}
    assert ledger.read_text() == "2026-12-01 5\n"
    [attempt] = await runs_history.attempts(launcher._store, *run.key)
    folder = run_dir(launcher._settings, run.name)
    assert attempt.link == (folder / "run.log").as_uri()


async def test_an_exception_in_the_task_is_a_user_failure(
    launcher: FlyteLauncher, ledger: Path
) -> None:
    run = await claimed(launcher, "load_day", day="2026-12-01", rows=-1)
    await launcher.launch(run)
    done = await run_ended(launcher._store, run, timeout=60)
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.USER, "ValueError")
    assert "rows must not be negative, got -1" in done.error.message


async def test_abort_stops_the_local_flyte_run(launcher: FlyteLauncher, ledger: Path) -> None:
    run = await claimed(launcher, "wait_long", day="2026-12-01")
    await launcher.launch(run)
    folder = run_dir(launcher._settings, run.name)

    def pid() -> int | None:
        try:
            return int((folder / "run.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    child = await eventually(pid, "the task's process")
    await eventually(
        lambda: _phase(launcher, run, AttemptPhase.RUNNING), "the attempt to be running"
    )
    await launcher._store.request_abort("p", "d", run.name, "wrong day")
    done = await run_ended(launcher._store, run, timeout=60)
    assert done.phase == WorkflowPhase.ABORTED
    assert not pid_alive(child) or _zombie(child)


async def test_a_replayed_create_runs_the_task_once(launcher: FlyteLauncher, ledger: Path) -> None:
    run = await claimed(launcher, "load_day", day="2026-12-02", rows=1)
    first = await launcher.create(run, run.name)
    second = await launcher.create(run, run.name)  # a replay while the first runs
    assert first == second
    seen = await launcher.observe(run, run.name)
    while seen.phase == AttemptPhase.RUNNING:
        seen = await eventually(lambda: _final(launcher, run), "the local run to end", timeout=60)
    third = await launcher.create(run, run.name)  # a replay after it ended
    assert third == first and seen.phase == AttemptPhase.SUCCEEDED
    assert ledger.read_text() == "2026-12-02 1\n"  # ran once


async def _phase(launcher: FlyteLauncher, run: RunRecord, phase: AttemptPhase) -> bool:
    attempts = await runs_history.attempts(launcher._store, *run.key)
    return bool(attempts) and attempts[-1].phase == phase


async def _final(launcher: FlyteLauncher, run: RunRecord) -> Any:
    seen = await launcher.observe(run, run.name)
    return seen if seen.phase != AttemptPhase.RUNNING else None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True

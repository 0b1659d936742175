"""Metaflow flows, unchanged, as tripwire flows: their own @trigger, @trigger_on_finish and
@project, run with ``python flow.py run`` by the real ``metaflow`` package, in local mode."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.models import RunRecord
from sensors.runs.phases import TERMINAL_PHASES, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import finished_run
from tests.fixtures.waits import eventually
from triggers import publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration

FLOWS = Path(__file__).parent / "metaflow_flows"
_RUN = 120.0  # a Metaflow run starts a Python process per step: seconds each, on 2 busy cores


@pytest.fixture
async def metaflow_engine(
    engine_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Engine, Path]]:
    """A worker with the Metaflow flows deployed from a copy in the test's folder, so that
    Metaflow's local metadata (``.metaflow``) lands there."""
    folder = shutil.copytree(FLOWS, tmp_path / "flows")
    monkeypatch.setenv("USER", "tester")  # Metaflow names the user branch after the user
    monkeypatch.delenv("METAFLOW_OWNER", raising=False)
    monkeypatch.setenv("METAFLOW_HOME", str(tmp_path / "metaflow-home"))
    async with Engine(Settings(), discover_flows([folder])) as running:
        await running.wait_ready(timeout=30)
        yield running, folder


def _artifacts(folder: Path, pathspec: str, step: str = "start") -> dict[str, object]:
    """The artifacts a step stored, read back by Metaflow's client in a process of its own."""
    script = (
        "import json, sys, metaflow\n"
        "metaflow.namespace(None)\n"
        "task = metaflow.Run(sys.argv[1])[sys.argv[2]].task\n"
        "print(json.dumps({a.id: a.data for a in task.artifacts if not a.id.startswith('_')},"
        " default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, pathspec, step],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


async def _runs_of(store: RunStore, flow: str) -> list[RunRecord]:
    return [run for run in await store.list_runs(limit=100) if run.flow == flow]


async def test_one_event_fills_parameters_by_name_and_metaflow_parses_them(
    metaflow_engine: tuple[Engine, Path],
) -> None:
    engine, folder = metaflow_engine
    assert engine.store is not None
    # When an event of the single dependency carries fields named like the parameters
    event_id = await publish.aio("mf.single", {"table": "sales", "rows": 5, "extra": 1})
    run = await finished_run(engine.store, event_id, timeout=_RUN)
    # Then `python flow.py run` ran with them, and Metaflow parsed them with its own types
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    pathspec = run.outputs["metaflow"]["pathspec"] if run.outputs else None
    assert pathspec and pathspec.startswith("SingleFlow/")
    artifacts = _artifacts(folder, pathspec)
    assert artifacts["seen"] == {"table": "sales", "rows": 5, "options": {"mode": "full"}}
    assert artifacts["tripwire_run"] == run.name  # tripwire's current, inside the step


async def test_mapped_events_wait_for_each_other_and_a_required_field_filters(
    metaflow_engine: tuple[Engine, Path],
) -> None:
    engine, _ = metaflow_engine
    assert engine.store is not None
    # An orders event without table_name does not count: table is required
    await publish.aio("mf.orders", {"other": "x"})
    await publish.aio("mf.quality", {"rows": 12, "date": "2026-12-01"})
    counted = await publish.aio("mf.orders", {"table_name": "orders"})
    run = await finished_run(engine.store, counted, timeout=_RUN)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert {k: run.parameters[k] for k in ("table", "rows", "day")} == {
        "table": "orders",
        "rows": 12,
        "day": "2026-12-01",
    }
    assert [e["name"] for e in run.events] == ["mf.quality", "mf.orders"]
    assert len(await _runs_of(engine.store, "MappedFlow")) == 1


async def test_trigger_on_finish_chains_on_the_end_event_tripwire_publishes(
    metaflow_engine: tuple[Engine, Path],
) -> None:
    engine, folder = metaflow_engine
    store = engine.store
    assert store is not None
    upstream_event = await publish.aio("mf.upstream", {"note": "go"})
    upstream = await finished_run(store, upstream_event, timeout=_RUN)
    assert upstream.phase == WorkflowPhase.SUCCEEDED, upstream.error
    reported = (upstream.outputs or {})["metaflow"]

    async def downstream() -> RunRecord | None:
        runs = await _runs_of(store, "DownstreamFlow")
        return runs[0] if runs and runs[0].phase in TERMINAL_PHASES else None

    run = await eventually(downstream, "DownstreamFlow's run", timeout=_RUN)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    # It was triggered by Metaflow's own end event, named and filled as Metaflow names it
    [event] = run.events
    assert event["name"] == "metaflow.shop.user.tester.UpstreamFlow.end"
    assert event["id"] == reported["end_task"]
    payload = event["payload"]
    assert payload["pathspec"] == reported["end_task"]
    assert (payload["flow_name"], payload["run_id"]) == ("UpstreamFlow", reported["run_id"])
    assert (payload["project_name"], payload["branch_name"]) == ("shop", "user.tester")
    assert payload["project_flow_name"] == "shop.user.tester.UpstreamFlow"
    # And inside it, Metaflow's current.trigger and tripwire's current both name the upstream
    artifacts = _artifacts(folder, run.outputs["metaflow"]["pathspec"] if run.outputs else "")
    assert artifacts["upstream"] == reported["pathspec"]
    assert artifacts["event_names"] == [event["name"]]


async def test_reset_at_drops_what_was_held_before_the_tick(
    metaflow_engine: tuple[Engine, Path],
) -> None:
    engine, _ = metaflow_engine
    store = engine.store
    assert store is not None
    now = datetime.now(UTC)
    before_midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=1)
    # a before today's midnight tick, b after it: they do not fire together
    await publish.aio("mf.reset.a", {}, time=before_midnight)
    await publish.aio("mf.reset.b", {}, time=now)
    # a again, after the tick: now both count
    fired = await publish.aio("mf.reset.a", {}, time=now)
    run = await finished_run(store, fired, timeout=_RUN)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert sorted(e["name"] for e in run.events) == ["mf.reset.a", "mf.reset.b"]
    assert all(e["time"] != before_midnight.isoformat() for e in run.events)
    assert len(await _runs_of(store, "ResetFlow")) == 1


def test_a_run_with_no_user_name_runs_as_the_user_it_was_deployed_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a flow deployed by ann, run where Metaflow finds no user (root does not count)
    folder = shutil.copytree(FLOWS, tmp_path / "flows")
    monkeypatch.setenv("USER", "ann")
    [flow] = [f for f in discover_flows([folder]) if f.name == "UpstreamFlow"]
    for name in ("METAFLOW_USER", "SUDO_USER", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "root")
    monkeypatch.setenv("METAFLOW_HOME", str(tmp_path / "metaflow-home"))
    context = tmp_path / "context.json"
    context.write_text(
        json.dumps(
            {
                "run_name": "upstream-1",
                "project": "p",
                "domain": "d",
                "flow": flow.name,
                "entrypoint": flow.entrypoint.model_dump(),
                "parameters": {"note": "hi"},
                "events": [],
            }
        )
    )
    result = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "triggers.run", "--context", str(context), "--result", str(result)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then Metaflow ran it, on ann's user branch
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(result.read_text())
    assert outcome["ok"] and outcome["outputs"]["metaflow"]["pathspec"].startswith("UpstreamFlow/")
    assert "Unknown user" not in done.stdout + done.stderr

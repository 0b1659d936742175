"""Shell completion offers what the run store holds: flow names, sensor ids, event names
and run names (issue 30 item 8), and never prints into the shell."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.main import get_command

from sensors.cli import app
from sensors.cli.base import complete_event, complete_flow, complete_run, complete_sensor
from sensors.runs.deploy import deploy
from sensors.runs.models import NewRun
from sensors.runs.store import RunStore
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.settings import get_settings


@trigger(event="data_updated")
def etl(day: str = "", rows: int = 0) -> None: ...


@trigger(events=["orders_loaded", "prices_loaded"])
def report(day: str = "") -> None: ...


@trigger(event="elsewhere")
def other() -> None: ...


async def _fill() -> None:
    settings = get_settings()
    async with await RunStore.open(settings.store_url) as store:
        project, domain = settings.project, settings.domain
        await deploy(store, [flow_spec(etl), flow_spec(report)], project=project, domain=domain)
        await deploy(store, [flow_spec(other)], project="other", domain=domain)
        for name in ("etl-1", "etl-2", "report-1"):
            await store.create_run(
                NewRun(
                    project=project,
                    domain=domain,
                    name=name,
                    flow=name.split("-")[0],
                    entrypoint={},
                    parameters={},
                    events=[],
                )
            )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TRIPWIRE_HOME whose SQLite store holds the flows above and three runs."""
    for name in ("TRIPWIRE_DATABASE_URL", "TRIPWIRE_PROJECT", "TRIPWIRE_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def filled(home: Path) -> Path:
    asyncio.run(_fill())
    return home


def offered(
    complete: Callable[[typer.Context, str], list[str]], incomplete: str = "", **params: str
) -> list[str]:
    ctx = typer.Context(get_command(app))
    ctx.params.update(params)
    return complete(ctx, incomplete)


def test_flow_names_are_those_deployed_to_the_project(filled: Path) -> None:
    assert offered(complete_flow) == ["etl", "report"]
    assert offered(complete_flow, "r") == ["report"]
    assert offered(complete_flow, project="other") == ["other"]


def test_event_names_are_those_the_deployed_triggers_wait_for(filled: Path) -> None:
    assert offered(complete_event) == ["data_updated", "orders_loaded", "prices_loaded"]


def test_sensors_are_named_by_flow_or_by_flow_dot_trigger(filled: Path) -> None:
    sensors = offered(complete_sensor, "etl")
    assert sensors[0] == "etl" and [s.split(".")[0] for s in sensors] == ["etl", "etl"]


def test_run_names_are_the_runs_of_the_project(filled: Path) -> None:
    assert offered(complete_run, "etl") == ["etl-1", "etl-2"]
    assert offered(complete_run, project="other") == []


def test_a_home_without_a_store_offers_nothing_and_creates_no_store(home: Path) -> None:
    assert offered(complete_flow) == []
    assert not home.exists()


def test_an_unreachable_store_offers_nothing_and_prints_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIPWIRE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert offered(complete_run) == []
    assert capfd.readouterr() == ("", "")


def bash_complete(line: str) -> subprocess.CompletedProcess[str]:
    """What the script of `tripwire --show-completion bash` runs on a TAB after ``line``."""
    env = os.environ | {
        "_TRIPWIRE_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(line.split(" ")) - 1),
    }
    return subprocess.run(
        [Path(sys.executable).parent / "tripwire"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bash_completion_of_the_tripwire_command_offers_the_flow_names(filled: Path) -> None:
    done = bash_complete("tripwire runs create ")
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["etl", "report"], "")


def test_bash_completion_of_commands_needs_no_store(home: Path) -> None:
    assert bash_complete("tripwire ru").stdout.split() == ["runs"]
    assert not home.exists()

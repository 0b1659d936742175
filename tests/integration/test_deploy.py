"""Deploying flows on SQLite and PostgreSQL: revisions, no-op redeploys, retired triggers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensors.runs.deploy import (
    current_flows,
    deploy,
    deployed_sensors,
    flow_revision,
    validate_name,
)
from sensors.runs.sensor_records import list_sensors
from sensors.runs.store import RunStore
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.errors import ConfigurationError, RunNotFoundError
from triggers.spec import FlowSpec

pytestmark = pytest.mark.integration


def daily(window: str = "1h") -> FlowSpec:
    @trigger(events=["orders", "customers"], within=window)
    def daily_join(rows: int = 0) -> None: ...

    return flow_spec(daily_join)


async def test_deploying_the_same_content_twice_changes_nothing(run_store: RunStore) -> None:
    first = await deploy(run_store, [daily()], project="p", domain="d")
    [sensor] = await deployed_sensors(run_store, project="p", domain="d")
    again = await deploy(run_store, [daily()], project="p", domain="d")
    assert (first.created, again.unchanged, again.revisions) == (
        ["daily_join"],
        ["daily_join"],
        {"daily_join": 1},
    )
    [same] = await deployed_sensors(run_store, project="p", domain="d")
    assert same.deployed_at == sensor.deployed_at


async def test_a_changed_trigger_gets_a_new_revision_and_the_old_one_is_retired(
    run_store: RunStore,
) -> None:
    await deploy(run_store, [daily("1h")], project="p", domain="d")
    [before] = await deployed_sensors(run_store, project="p", domain="d")
    changed = await deploy(run_store, [daily("2h")], project="p", domain="d")
    assert (changed.changed, changed.revisions) == (["daily_join"], {"daily_join": 2})
    [(spec, revision)] = await current_flows(run_store, project="p", domain="d")
    assert revision == 2 and spec.triggers[0].within.total_seconds() == 7200
    old, _ = await flow_revision(run_store, "daily_join", project="p", domain="d", revision=1)
    assert old.triggers[0].within.total_seconds() == 3600
    [after] = await deployed_sensors(run_store, project="p", domain="d")
    assert after.deployed_at > before.deployed_at  # the new revision counts events from now
    [listed] = await list_sensors(run_store, project="p", domain="d")
    assert listed.revision == 2 and listed.within_seconds == 7200


async def test_prune_retires_flows_missing_from_the_deployment(run_store: RunStore) -> None:
    @trigger(event="other")
    def other(rows: int = 0) -> None: ...

    await deploy(run_store, [daily(), flow_spec(other)], project="p", domain="d")
    done = await deploy(run_store, [daily()], project="p", domain="d", prune=True)
    assert done.retired == ["other"]
    assert [s.id for s in await deployed_sensors(run_store, project="p", domain="d")] == [
        "daily_join.trigger"
    ]
    assert [s.sensor_id for s in await list_sensors(run_store, project="p", domain="d")] == [
        "daily_join.trigger"
    ]
    with pytest.raises(RunNotFoundError, match="no flow 'other' is deployed in p/d"):
        await flow_revision(run_store, "other", project="p", domain="d")


async def test_workers_deploying_together_create_one_revision(run_store: RunStore) -> None:
    results = await asyncio.gather(
        *(deploy(run_store, [daily()], project="p", domain="d") for _ in range(5))
    )
    assert sum(len(r.created) for r in results) == 1
    assert [rev for _, rev in await current_flows(run_store, project="p", domain="d")] == [1]


@pytest.mark.parametrize("name", ["Default", "a_b", "-x", "x" * 64, ""])
def test_project_and_domain_names_are_validated(name: str) -> None:
    with pytest.raises(ConfigurationError, match="lowercase letters, digits and '-'"):
        validate_name(name, "project")


def test_deploy_refuses_everything_when_any_file_fails_naming_each_in_one_line(
    tmp_path: Path,
) -> None:
    # Given a folder with a good flow file and two that fail to import
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "good.py").write_text(
        "from triggers import trigger\n\n@trigger(event='e')\ndef good() -> None: ...\n"
    )
    (flows / "env.py").write_text("import os\n\nTOKEN = os.environ['NO_SUCH_VARIABLE']\n")
    (flows / "typo.py").write_text(
        "from triggers import trigger\n\n"
        "@trigger(event='e', within='2x')\ndef typo() -> None: ...\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")} | {
        "TRIPWIRE_HOME": str(tmp_path / "home"),
        "TRIPWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
    }

    def tripwire(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sensors", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # When it is deployed
    done = tripwire("deploy", "flows")
    # Then nothing is, and each bad file is one line with its line and the user's code
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: 2 files failed to load, so nothing was deployed; fix them and try again:",
        "  flows/env.py:3: KeyError: 'NO_SUCH_VARIABLE' (TOKEN = os.environ['NO_SUCH_VARIABLE'])",
        "  flows/typo.py:3: flow 'typo': within='2x' is not a duration; write e.g. '90s', '15m', "
        "'1h', '2d' or a datetime.timedelta. (@trigger(event='e', within='2x'))",
    ]
    assert "no sensors" in tripwire("sensors", "list").stdout
    # And --verbose adds each file's traceback
    verbose = tripwire("deploy", "flows", "--verbose")
    assert verbose.stderr.count("Traceback (most recent call last)") == 2

"""`tripwire runs create` and `runs recover` refuse parameters the flow does not have, and
`-p` drops the spaces around its `=` (issue 30 item 3), against the real broker and store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from sensors.stages.kafka import ensure_topics
from tests.fixtures.engine import tripwire_cli
from triggers.settings import Settings

pytestmark = pytest.mark.integration

FLOW = """
from triggers import trigger

@trigger(event="tables_loaded")
def etl(day: str, rows: int = 0, table: str = "orders") -> None: ...
"""


@pytest.fixture
async def deployed(engine_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The flow above deployed, and the run-request topic `runs create` sends to."""
    settings = Settings()
    await ensure_topics(settings, [settings.topic_run_requests])
    (tmp_path / "flows.py").write_text(FLOW)
    done = await tripwire_cli(engine_env, "deploy", str(tmp_path / "flows.py"))
    assert done.returncode == 0, done.stderr
    return engine_env


async def test_runs_create_refuses_an_unknown_parameter_and_lists_the_flows_own(
    deployed: dict[str, str],
) -> None:
    done = await tripwire_cli(
        deployed, "runs", "create", "etl", "-p", "day=d", "-p", "nosuchparam=1"
    )
    assert (done.returncode, done.stderr) == (
        1,
        "error: flow 'etl' has no parameter 'nosuchparam'; its parameters are: day, rows, table\n",
    )
    listed = await tripwire_cli(deployed, "runs", "list", "--json")
    assert json.loads(listed.stdout) == []


async def test_spaces_around_the_equals_sign_are_not_part_of_the_parameter(
    deployed: dict[str, str],
) -> None:
    done = await tripwire_cli(
        deployed, "runs", "create", "etl", "-p", "day = d", "-p", "rows = 5", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["parameters"] == {"day": "d", "rows": 5, "table": "orders"}


async def test_runs_recover_refuses_an_unknown_parameter_too(deployed: dict[str, str]) -> None:
    # Given: a finished run of the flow
    created = await tripwire_cli(
        deployed, "runs", "create", "etl", "-p", "day=d", "--name", "etl-1"
    )
    assert created.returncode == 0, created.stderr
    async with await RunStore.open(Settings().store_url) as store:
        for phase in (WorkflowPhase.RUNNING, WorkflowPhase.SUCCEEDED):
            await store.transition(Settings().project, Settings().domain, "etl-1", phase)

    # When: it is recovered with a parameter the flow does not have
    done = await tripwire_cli(deployed, "runs", "recover", "etl-1", "-p", "tabel=x")

    # Then: refused, with a hint
    assert done.returncode == 1
    assert done.stderr == (
        "error: flow 'etl' has no parameter 'tabel' (did you mean 'table'?); its parameters "
        "are: day, rows, table\n"
    )

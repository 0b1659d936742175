"""``tripwire dev`` follows edits: the reloader against a real run store, and the real file
watcher (watchfiles) on a real folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from sensors.registry import load_declarations
from sensors.reloader import FlowReloader
from sensors.runs.deploy import current_flows, deploy
from sensors.runs.import_problems import import_problems
from sensors.runs.store import RunStore
from tests.fixtures.waits import eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration

FLOW = """
from triggers import trigger

@trigger(
    event={{"name": "data_updated", "parameters": {{"days": "$.cfg.days"}}}}, within="{within}"
)
def etl(days: int = 3) -> None:
    print("days", days)
"""


class _Dev:
    """A reloader over one folder, and what it said and served."""

    def __init__(self, folder: Path, store: RunStore) -> None:
        self.said: list[str] = []  # "what: text"
        self.served: list[list[Any]] = []
        self.settings = Settings(project="p", domain="d", home=folder.parent / "home")
        self.reloader = FlowReloader(
            [folder],
            self.settings,
            store,
            load_declarations([folder]),
            serve=self.served.append,
            say=lambda what, text: self.said.append(f"{what}: {text}"),
        )

    async def deployed(self) -> dict[str, Any]:
        flows = await current_flows(self.reloader.store, project="p", domain="d")
        return {spec.name: (spec, revision) for spec, revision in flows}


@pytest.fixture
async def dev(tmp_path: Path, run_store: RunStore, monkeypatch: pytest.MonkeyPatch) -> _Dev:
    monkeypatch.chdir(tmp_path)  # as a user runs `tripwire dev flows`: paths read flows/...
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "etl.py").write_text(FLOW.format(within="1h"))
    made = _Dev(folder, run_store)
    await deploy(run_store, made.reloader.found.flows, project="p", domain="d", prune=True)
    await made.reloader.record()
    return made


async def test_an_edited_trigger_is_redeployed_served_and_told_in_one_line(
    dev: _Dev, tmp_path: Path
) -> None:
    # When the flow's window is edited
    (tmp_path / "flows" / "etl.py").write_text(FLOW.format(within="2h"))
    await dev.reloader.reload(["flows/etl.py"])
    # Then the new revision is deployed and served, and one line says what changed
    spec, revision = (await dev.deployed())["etl"]
    assert revision == 2 and spec.triggers[0].within.total_seconds() == 7200
    assert len(dev.served) == 1 and [s.flow.name for s in dev.served[0]] == ["etl"]
    assert dev.said == ["reloaded: flows/etl.py: ~ etl: within 1h → 2h"]


async def test_a_file_broken_mid_edit_keeps_its_last_good_flows_and_is_recorded_till_fixed(
    dev: _Dev, tmp_path: Path
) -> None:
    etl = tmp_path / "flows" / "etl.py"
    # When the file is saved with a typo
    etl.write_text(FLOW.format(within="1h").replace("@trigger(", "@triger("))
    await dev.reloader.reload(["flows/etl.py"])
    # Then its flow stays deployed as it was, and the problem is recorded and told
    assert (await dev.deployed())["etl"][1] == 1
    [problem] = await import_problems(dev.reloader.store, project="p", domain="d")
    assert problem.error == "NameError: name 'triger' is not defined" and problem.line == 4
    [said] = dev.said  # and no "reloaded" line: nothing of it reloaded
    assert said.startswith("import error: flows/etl.py:4: NameError: name 'triger' is not defined")
    assert said.endswith("(still serving its last good flows: etl)")
    # And once it is fixed, the problem is gone
    etl.write_text(FLOW.format(within="1h"))
    await dev.reloader.reload(["flows/etl.py"])
    assert await import_problems(dev.reloader.store, project="p", domain="d") == []
    assert dev.said[-1].endswith("no trigger changed; the next runs use the new code")


async def test_a_new_file_is_deployed_and_a_deleted_one_retired(dev: _Dev, tmp_path: Path) -> None:
    new = tmp_path / "flows" / "report.py"
    new.write_text(FLOW.replace("etl", "report").format(within="1h"))
    await dev.reloader.reload(["flows/report.py"])
    assert sorted(await dev.deployed()) == ["etl", "report"]
    assert dev.said[-1].endswith("+ report <- data_updated")
    new.unlink()
    await dev.reloader.reload(["flows/report.py"])
    assert sorted(await dev.deployed()) == ["etl"]
    assert dev.said[-1].endswith("- report (retired)")


async def test_the_watcher_reloads_when_a_file_is_saved(dev: _Dev, tmp_path: Path) -> None:
    watching = asyncio.create_task(dev.reloader.watch())
    try:
        etl = tmp_path / "flows" / "etl.py"
        # The watcher starts in a thread: save until it has seen one (each save is an edit)
        for within in ("2h", "3h", "4h", "5h", "6h"):
            etl.write_text(FLOW.format(within=within))
            with contextlib.suppress(pytest.fail.Exception):
                await eventually(lambda: dev.said, "the reload line", timeout=3)
                break
        assert dev.said and "~ etl: within 1h →" in dev.said[0]
        assert (await dev.deployed())["etl"][1] == 2
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    assert os.path.exists(etl)

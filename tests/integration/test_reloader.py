"""``tripwire dev`` follows edits: the reloader against a real run store, and the real file
watcher (watchfiles) on a real folder."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from sensors.reloader import FlowReloader, load_tracked
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
        self.served = 0
        self.code_changes = 0
        self.settings = Settings(project="p", domain="d", home=folder.parent / "home")
        self.reloader = FlowReloader(
            [folder],
            self.settings,
            store,
            load_tracked([folder]),
            serve=self._serve,
            code_changed=self._code_changed,
            say=lambda what, text: self.said.append(f"{what}: {text}"),
        )

    async def _serve(self) -> None:
        self.served += 1

    def _code_changed(self) -> None:
        self.code_changes += 1

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
    assert dev.served == 1 and dev.code_changes == 1
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
    assert said.endswith("(its flows etl stay deployed, and their runs fail until it loads)")
    # And once it is fixed, the problem is gone
    etl.write_text(FLOW.format(within="1h"))
    await dev.reloader.reload(["flows/etl.py"])
    assert await import_problems(dev.reloader.store, project="p", domain="d") == []
    assert dev.said[-1] == "reloaded: flows/etl.py: flows/etl.py loads now"


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
        await asyncio.wait_for(dev.reloader.watching.wait(), 30)
        (tmp_path / "flows" / "etl.py").write_text(FLOW.format(within="2h"))
        await eventually(lambda: dev.said, "the reload line")
        assert dev.said == ["reloaded: flows/etl.py: ~ etl: within 1h → 2h"]
        assert (await dev.deployed())["etl"][1] == 2
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)


HELPED = """
from triggers import trigger
from {helper} import MESSAGE


@trigger(event="data_updated")
def helped() -> None:
    print(MESSAGE)
"""


async def _helped_flow(dev: _Dev, tmp_path: Path, prefix: str) -> str:
    """A flow that imports a helper module of the user's, loaded; the helper's name (this
    test's own: modules stay imported in this process)."""
    helper = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (tmp_path / "flows" / f"{helper}.py").write_text("MESSAGE = 'v1'\n")
    (tmp_path / "flows" / "helped.py").write_text(HELPED.format(helper=helper))
    await dev.reloader.reload(["flows/helped.py"])
    return helper


async def test_a_helper_module_the_flows_import_is_followed_even_named_with_an_underscore(
    dev: _Dev, tmp_path: Path
) -> None:
    # Given a flow that imports a helper module of the user's
    helper = await _helped_flow(dev, tmp_path, "_common")
    watching = asyncio.create_task(dev.reloader.watch())
    try:
        await asyncio.wait_for(dev.reloader.watching.wait(), 30)
        # When only the helper is edited
        (tmp_path / "flows" / f"{helper}.py").write_text("MESSAGE = 'v2'\n")
        # Then it is read again, and local runs are told to start from the new code
        await eventually(lambda: len(dev.said) == 2, "the reload of the helper")
        assert dev.said[-1] == (
            f"reloaded: flows/{helper}.py: no trigger changed; the next runs use the new code"
        )
        assert sys.modules[helper].MESSAGE == "v2"
        assert dev.code_changes == 2
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        sys.modules.pop(helper, None)


async def test_modules_imported_before_the_flows_are_never_dropped_though_under_the_folder(
    dev: _Dev, tmp_path: Path
) -> None:
    # Given a package under the watched folder that was imported before the flows loaded
    # (a virtualenv in the project, or tripwire itself, when dev watches the project's root)
    vendored = tmp_path / "flows" / "vendored_lib"
    vendored.mkdir()
    (vendored / "__init__.py").write_text("class Marker:\n    pass\n")
    sys.path.insert(0, str(tmp_path / "flows"))
    try:
        import vendored_lib  # type: ignore[import-not-found]  # made just above

        # When a flow that imports it is added and then edited
        (tmp_path / "flows" / "uses.py").write_text(
            HELPED.format(helper="vendored_lib").replace("MESSAGE", "Marker")
        )
        await dev.reloader.reload(["flows/uses.py"])
        await dev.reloader.reload(["flows/uses.py"])
        # Then it is the same module, and the flows are still served
        assert sys.modules["vendored_lib"] is vendored_lib
        assert sorted(await dev.deployed()) == ["etl", "helped"]
    finally:
        sys.path.remove(str(tmp_path / "flows"))
        sys.modules.pop("vendored_lib", None)


SOURCES = "sources:\n  - {name: orders, url: 'redis://127.0.0.1:6379', stream: orders, event: e}\n"


async def test_a_sources_file_broken_mid_edit_keeps_its_sources(dev: _Dev, tmp_path: Path) -> None:
    sources = tmp_path / "flows" / "sources.yaml"
    sources.write_text(SOURCES)
    await dev.reloader.reload(["flows/sources.yaml"])
    assert dev.said[-1] == "reloaded: flows/sources.yaml: + source orders"
    sources.write_text(SOURCES.replace("event: e}", "event: e, typo: 1}"))
    await dev.reloader.reload(["flows/sources.yaml"])
    assert [s.name for s in dev.reloader.found.sources] == ["orders"]
    assert dev.said[-1].startswith("import error: flows/sources.yaml:2: source 'orders': ")


async def test_a_flow_file_that_sets_a_signal_handler_reloads(dev: _Dev, tmp_path: Path) -> None:
    # Files load in the event loop's thread, as at start, where signal handlers may be set
    text = FLOW.format(within="1h").replace(
        "from triggers import trigger",
        "import signal\nfrom triggers import trigger\n"
        "signal.signal(signal.SIGUSR2, signal.SIG_IGN)",
    )
    (tmp_path / "flows" / "etl.py").write_text(text)
    await dev.reloader.reload(["flows/etl.py"])
    assert dev.reloader.found.problems == []


async def test_a_broken_helper_says_no_new_code_and_its_fix_is_seen(
    dev: _Dev, tmp_path: Path
) -> None:
    # Given a flow whose helper module is saved broken: the flow's file fails to import
    helper = await _helped_flow(dev, tmp_path, "_words")
    (tmp_path / "flows" / f"{helper}.py").write_text("MESSAGE = (\n")
    await dev.reloader.reload([f"flows/{helper}.py"])
    # Then it is an import error of the flow's file, and nothing says the new code runs
    assert [line.split(":")[0] for line in dev.said[1:]] == ["import error"]
    watching = asyncio.create_task(dev.reloader.watch())
    try:
        await asyncio.wait_for(dev.reloader.watching.wait(), 30)
        # When the helper is fixed (it did not load, so only the failure makes it watched)
        (tmp_path / "flows" / f"{helper}.py").write_text("MESSAGE = 'v2'\n")
        # Then the flow's file loads again
        await eventually(lambda: "loads now" in dev.said[-1], "the fix to be seen")
        assert dev.said[-1] == f"reloaded: flows/{helper}.py: flows/helped.py loads now"
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        sys.modules.pop(helper, None)


async def test_a_save_through_a_temporary_file_names_only_the_flow_file(
    dev: _Dev, tmp_path: Path
) -> None:
    watching = asyncio.create_task(dev.reloader.watch())
    try:
        await asyncio.wait_for(dev.reloader.watching.wait(), 30)
        # As `sed -i` and many editors save: a temporary file, renamed over the flow file
        temporary = tmp_path / "flows" / "sedAb12Cd"
        temporary.write_text(FLOW.format(within="2h"))
        temporary.replace(tmp_path / "flows" / "etl.py")
        await eventually(lambda: dev.said, "the reload line")
        assert dev.said == ["reloaded: flows/etl.py: ~ etl: within 1h → 2h"]
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)

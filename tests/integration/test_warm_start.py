"""Warm starts (TRIPWIRE_RUN_START=fork): local runs forked from a zygote per flow revision,
through the real engine, broker and store. Each run is still a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from textwrap import dedent

import pytest

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs import history as runs_history
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from tests.fixtures.engine import finished_run
from tests.fixtures.servers import pid_alive
from tests.fixtures.waits import eventually
from tests.integration.test_run_lifecycle import (  # the same scenarios, warm
    test_a_flow_that_fails_once_is_retried_as_a_second_attempt,
    test_a_flow_that_keeps_failing_fails_after_its_retries,
    test_a_run_over_its_timeout_is_timed_out_and_its_process_tree_killed,
    test_abort_stops_a_running_run_through_aborting_and_records_the_cause,
)
from triggers import publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration

__all__ = [
    "test_a_flow_that_fails_once_is_retried_as_a_second_attempt",
    "test_a_flow_that_keeps_failing_fails_after_its_retries",
    "test_a_run_over_its_timeout_is_timed_out_and_its_process_tree_killed",
    "test_abort_stops_a_running_run_through_aborting_and_records_the_cause",
]

PROBE = '''
import json, os
from pathlib import Path
from triggers import current, trigger
{extra}

@trigger(event="warm_probe")
def warm_probe(marker: str = "") -> None:
    """Says where it ran, then changes what a next run must not see."""
    info = {{
        "pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0),
        "pgid": os.getpgid(0), "cwd": os.getcwd(), "leak": os.environ.get("WARM_LEAK"),
        "run": current.run_name,
    }}
    os.environ["WARM_LEAK"] = "set by an earlier run"
    os.chdir("/")
    Path(marker).write_text(json.dumps(info))
'''


@pytest.fixture(autouse=True)
def warm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPWIRE_RUN_START", "fork")


@pytest.fixture
def probe_flows(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    extra = getattr(request, "param", "")
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "probe.py").write_text(PROBE.format(extra=dedent(extra)))
    return folder


@pytest.fixture
async def probe_engine(engine_env: dict[str, str], probe_flows: Path) -> AsyncIterator[Engine]:
    async with Engine(Settings(), discover_flows([probe_flows])) as running:
        await running.wait_ready(timeout=30)
        yield running


async def _probe(engine: Engine, marker: Path) -> dict[str, object]:
    assert engine.store is not None
    event_id = await publish.aio("warm_probe", {"marker": str(marker)})
    run = await finished_run(engine.store, event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    info: dict[str, object] = json.loads(marker.read_text())
    return info


async def test_a_forked_run_is_a_session_of_its_own_and_sees_nothing_of_the_run_before(
    probe_engine: Engine, tmp_path: Path
) -> None:
    # When two runs of the same flow start, one after the other
    first = await _probe(probe_engine, tmp_path / "first.json")
    second = await _probe(probe_engine, tmp_path / "second.json")
    # Then each was forked by the flow's zygote, not by the worker, as a session and
    # process group of its own (a timeout or abort kills its whole tree)
    for info in (first, second):
        assert info["ppid"] != os.getpid()
        assert info["sid"] == info["pid"] == info["pgid"]
    assert first["ppid"] == second["ppid"]  # one zygote for the flow's revision
    # And the second saw neither the environment nor the folder the first changed
    assert (second["leak"], second["cwd"]) == (None, os.getcwd())
    assert first["run"] != second["run"]


@pytest.mark.parametrize(
    "probe_flows",
    ["import threading, time\nthreading.Thread(target=time.sleep, args=(9,), daemon=True).start()"],
    indirect=True,
)
async def test_a_flow_module_that_starts_a_thread_at_import_starts_cold_and_says_why(
    probe_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sensors.launchers.zygotes")
    info = await _probe(probe_engine, tmp_path / "cold.json")
    assert info["ppid"] == os.getpid()  # a new interpreter, started by the worker itself
    [warning] = [r.getMessage() for r in caplog.records if "start cold" in r.getMessage()]
    assert "started threads at import" in warning


DIES_AS_ZYGOTE_FORKS = """
import sys
if getattr(sys.modules["__main__"].__spec__, "name", "") == "triggers.zygote":
    os.register_at_fork(before=lambda: os._exit(9))  # a zygote of it dies at each fork
"""


@pytest.mark.parametrize("probe_flows", [DIES_AS_ZYGOTE_FORKS], indirect=True)
async def test_a_run_whose_zygotes_die_as_they_fork_fails_as_system_and_is_retried_cold(
    probe_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert probe_engine.store is not None
    caplog.set_level(logging.WARNING, logger="sensors.launchers.zygotes")
    # When a run of a flow whose zygote, and the one started after it, die as they fork
    info = await _probe(probe_engine, tmp_path / "retried.json")
    # Then its first attempt failed as a SYSTEM error, and its retry ran cold
    assert info["ppid"] == os.getpid()
    [run] = await probe_engine.store.list_runs(flow="warm_probe")
    first, second = await runs_history.attempts(probe_engine.store, *run.key)
    assert first.error is not None and (first.error.kind, first.error.code) == (
        ErrorKind.SYSTEM,
        "SpawnFailed",
    )
    assert (first.phase, second.phase) == (AttemptPhase.RETRYABLE_FAILED, AttemptPhase.SUCCEEDED)
    [warning] = [r.getMessage() for r in caplog.records if "start cold" in r.getMessage()]
    assert "died twice while forking" in warning


async def test_runs_start_anyway_after_their_zygote_was_sigkilled(
    probe_engine: Engine, tmp_path: Path
) -> None:
    # Given the flow's zygote, found as the parent of a first run
    first = await _probe(probe_engine, tmp_path / "first.json")
    zygote = int(str(first["ppid"]))
    # When it is SIGKILLed
    os.kill(zygote, signal.SIGKILL)
    await eventually(lambda: not pid_alive(zygote), "the zygote to be gone")
    # Then runs requested at once after it start all the same, from a new zygote
    later = await asyncio.gather(
        *(_probe(probe_engine, tmp_path / f"later{n}.json") for n in range(3))
    )
    parents = {info["ppid"] for info in later}
    assert len(parents) == 1 and not parents & {zygote, os.getpid()}


async def test_three_hundred_runs_leave_no_open_files_or_zombies_behind(
    probe_engine: Engine, tmp_path: Path
) -> None:
    # Given a worker warmed up by 50 runs at once: its zygote and its launcher exist
    await _runs(probe_engine, tmp_path, 50)
    before = _open_files()
    # When 300 more run
    await _runs(probe_engine, tmp_path, 300)
    # Then the descriptors a run uses (pipes, pidfds, run folders) are back where they were,
    # and no child is left unreaped
    try:
        await eventually(lambda: _open_files() <= before, "descriptors to close")
    except BaseException:
        print(before, _open_files(), _describe())
        raise
    assert _zombies() == 0


async def _runs(engine: Engine, tmp_path: Path, count: int) -> None:
    assert engine.store is not None
    store = engine.store
    ids = {await publish.aio("warm_probe", {"marker": str(tmp_path / "m")}) for _ in range(count)}

    async def all_done() -> bool:
        runs = await store.list_runs(phase=WorkflowPhase.SUCCEEDED, limit=10_000)
        return ids <= {e["id"] for r in runs for e in r.events}

    await eventually(all_done, f"{count} runs to succeed", timeout=300)


def _describe() -> list[str]:
    """What this process has open that a run could leave behind: pipes, pidfds and files
    in the runs' folders (the database pool and the broker's sockets are another matter)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(("pipe:", "anon_inode:[pidfd]")) or "/runs/" in target:
                found.append(target)
    return sorted(found)


def _open_files() -> int:
    return len(_describe())


def _zombies() -> int:
    """This process's children that ended and were not reaped."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            count += 1
    return count

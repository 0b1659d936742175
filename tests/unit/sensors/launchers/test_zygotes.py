"""Zygotes: warm parents of local runs, one per flow revision, at most a few at once.

Real processes (a zygote is ``python -m triggers.zygote``), no servers."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sensors.launchers.process import pid_alive
from sensors.launchers.zygotes import Zygotes

FLOW = """
import os
from triggers import trigger

@trigger(event="{name}_event")
def {name}() -> None:
    print("ran {name} forked by", os.getppid())
"""


def _flow(tmp_path: Path, name: str) -> dict[str, str]:
    path = tmp_path / f"{name}.py"
    path.write_text(FLOW.format(name=name))
    return {"path": str(path), "function": name}


async def _run(zygotes: Zygotes, tmp_path: Path, entrypoint: dict[str, str], n: int) -> int:
    """Fork run ``n`` of ``entrypoint``; return the pid of the zygote that forked it, once
    it ended well."""
    folder = tmp_path / f"run{n}"
    folder.mkdir()
    context = {
        "run_name": f"run{n}",
        "project": "p",
        "domain": "d",
        "flow": entrypoint["function"],
        "entrypoint": entrypoint,
        "parameters": {},
        "events": [],
        "scheduled_at": None,
        "trigger_info": None,
        "command": None,
    }
    (folder / "context.json").write_text(json.dumps(context))
    warm = await zygotes.fork(
        entrypoint,
        1,
        context=folder / "context.json",
        result=folder / "result.json",
        log=folder / "run.log",
        cwd=tmp_path,
        env={"TRIPWIRE_RUN_CONTEXT": str(folder / "context.json"), "TRIPWIRE_HOME": str(tmp_path)},
    )
    assert warm is not None
    assert await warm.wait() == 0
    assert json.loads((folder / "result.json").read_text()) == {"ok": True}
    said = (folder / "run.log").read_text()
    assert f"ran {entrypoint['function']} forked by" in said
    return int(said.split()[-1])


@pytest.fixture
async def zygotes(tmp_path: Path) -> AsyncIterator[Zygotes]:
    made = Zygotes(tmp_path / "logs", warm=1)
    yield made
    await made.close()


async def test_runs_of_one_flow_are_forked_from_one_zygote(
    zygotes: Zygotes, tmp_path: Path
) -> None:
    flow = _flow(tmp_path, "alpha")
    parents = {await _run(zygotes, tmp_path, flow, n) for n in range(3)}
    assert len(parents) == 1 and os.getpid() not in parents
    assert zygotes.warm == 1


async def test_past_its_limit_the_least_recently_used_zygote_ends_and_comes_back_on_demand(
    zygotes: Zygotes, tmp_path: Path
) -> None:
    # Given room for one warm flow, and a run of alpha
    alpha, beta = _flow(tmp_path, "alpha"), _flow(tmp_path, "beta")
    first = await _run(zygotes, tmp_path, alpha, 1)
    # When beta runs, alpha's zygote ends
    await _run(zygotes, tmp_path, beta, 2)
    assert zygotes.warm == 1 and not pid_alive(first)
    # And when alpha runs again, it gets a new one
    assert await _run(zygotes, tmp_path, alpha, 3) not in (first, os.getpid())
    assert zygotes.warm == 1


async def test_an_edit_of_a_flow_file_reaches_the_next_run_though_its_revision_is_the_same(
    zygotes: Zygotes, tmp_path: Path
) -> None:
    # Given a run of alpha, forked from its zygote
    alpha = _flow(tmp_path, "alpha")
    first = await _run(zygotes, tmp_path, alpha, 1)
    # When the file's code changes (its declarations do not: the revision stays 1)
    path = Path(alpha["path"])
    path.write_text(path.read_text().replace('print("ran', 'print("edited; ran'))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    # Then the next run is forked by a new zygote, which imported the new code
    second = await _run(zygotes, tmp_path, alpha, 2)
    assert second != first and not pid_alive(first)
    assert "edited; ran alpha" in (tmp_path / "run2" / "run.log").read_text()

"""rate_limit and max_concurrency: claims across racing workers, and a worker holding a queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs import limits
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import tripwire_cli
from tests.fixtures.runs import new_run
from tests.fixtures.waits import eventually
from triggers import publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration


async def test_racing_claims_never_exceed_max_concurrency(run_store: RunStore) -> None:
    # Given ten queued runs of a trigger that allows three at once
    queued = []
    for n in range(10):
        request = new_run(f"flow-{n}").model_copy(update={"max_concurrency": 3})
        queued.append((await run_store.create_run(request))[0])
    # When ten workers try to claim them at the same moment
    now = datetime.now(UTC)
    claimed = await asyncio.gather(*(limits.claim(run_store, run, now, "w:1") for run in queued))
    # Then three start; the rest wait, still QUEUED
    assert sum(c is not None for c in claimed) == 3
    assert len(await run_store.list_runs(phase=WorkflowPhase.QUEUED)) == 7


async def test_a_rate_limit_counts_the_runs_started_in_its_window(run_store: RunStore) -> None:
    limit = {"rate_limit_count": 2, "rate_limit_seconds": 60.0}
    queued = [
        (await run_store.create_run(new_run(f"flow-{n}").model_copy(update=limit)))[0]
        for n in range(3)
    ]
    now = datetime.now(UTC)
    assert [await limits.claim(run_store, r, now, "w:1") is not None for r in queued] == [1, 1, 0]
    # A minute later (the window is measured from the runs' real start times)
    assert await limits.claim(run_store, queued[2], now + timedelta(seconds=61), "w:1") is not None


FLOWS = """
import time
from triggers import trigger

@trigger(event="burst", max_concurrency=2)
def one_at_a_time(n: int = 0) -> None:
    time.sleep(1)

@trigger(event="ticket", rate_limit="2/3s")
def rationed(n: int = 0) -> None: ...
"""


@pytest.fixture
async def worker(engine_env: dict[str, str], tmp_path: Path) -> AsyncIterator[RunStore]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "limited.py").write_text(FLOWS)
    async with Engine(Settings(), discover_flows([flows])) as running:
        await running.wait_ready(timeout=30)
        assert running.store is not None
        yield running.store


async def test_runs_over_max_concurrency_wait_in_queued_and_all_run(
    worker: RunStore, engine_env: dict[str, str]
) -> None:
    for n in range(6):
        await publish.aio("burst", {"n": n})
    most, shown = 0, False

    async def all_done() -> list[RunRecord] | None:
        nonlocal most, shown
        runs = await worker.list_runs(flow="one_at_a_time")
        most = max(most, sum(r.phase == WorkflowPhase.RUNNING for r in runs))
        if not shown and sum(r.phase == WorkflowPhase.QUEUED for r in runs) >= 2:
            status = await tripwire_cli(engine_env, "sensors", "status", "one_at_a_time.trigger")
            shown = "limits     2 at once;" in status.stdout and "queued" in status.stdout
        done = [r for r in runs if r.phase == WorkflowPhase.SUCCEEDED]
        return runs if len(done) == 6 else None

    runs = await eventually(all_done, "six runs, two at a time", timeout=60, interval=0.05)
    assert most <= 2, f"{most} runs ran at once"
    assert shown, "`sensors status` never showed the queued runs"
    # Never more than two overlapped, by their recorded times
    spans = [(r.started_at, r.finished_at) for r in runs]
    for start, _ in spans:
        assert start is not None
        overlapping = [s for s, f in spans if s and f and s <= start < f]
        assert len(overlapping) <= 2


async def test_runs_over_a_rate_limit_start_later_and_none_is_dropped(worker: RunStore) -> None:
    for n in range(5):
        await publish.aio("ticket", {"n": n})

    async def all_done() -> list[RunRecord] | None:
        runs = await worker.list_runs(flow="rationed")
        ok = [r for r in runs if r.phase == WorkflowPhase.SUCCEEDED]
        return ok if len(ok) == 5 else None

    runs = await eventually(all_done, "five rationed runs", timeout=60)
    starts = sorted(r.started_at for r in runs if r.started_at)
    for i, start in enumerate(starts):
        in_window = [s for s in starts[i:] if s < start + timedelta(seconds=3)]
        assert len(in_window) <= 2, starts

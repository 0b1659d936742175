"""Thresholds, sequences, wildcards, debounce and absences through the real broker and store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensors.core.schedule import wall_window
from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import tripwire_cli
from tests.fixtures.processes import ready, worker
from tests.fixtures.waits import caught_up, eventually
from triggers import publish
from triggers.settings import Settings, get_settings

pytestmark = pytest.mark.integration

KINDS = Path(__file__).parent / "kinds"


@pytest.fixture
async def kinds(
    engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunStore]:
    """A worker with one flow of each kind deployed; absences decided 1 s after windows close."""
    monkeypatch.setenv("TRIPWIRE_ABSENCE_GRACE", "1")
    async with Engine(Settings(), discover_flows([KINDS])) as running:
        await running.wait_ready(timeout=30)
        assert running.store is not None
        yield running.store


async def finished(store: RunStore, flow: str, count: int = 1) -> list[RunRecord]:
    async def probe() -> list[RunRecord] | None:
        runs = await store.list_runs(flow=flow, limit=100)
        done = [r for r in runs if r.finished_at is not None]
        return done if len(done) >= count else None

    runs: list[RunRecord] = await eventually(probe, f"{count} finished run(s) of {flow}")
    assert all(r.phase == WorkflowPhase.SUCCEEDED for r in runs), [r.error for r in runs]
    return runs


def seen_by(run: RunRecord) -> dict:  # type: ignore[type-arg]
    """What the run's ``current`` said (the flows write it down)."""
    return json.loads((get_settings().home / f"{run.name}.json").read_text())


async def test_a_threshold_fires_on_the_nth_event_of_a_key_and_the_run_sees_all_of_them(
    kinds: RunStore,
) -> None:
    for n in (1, 2):
        await publish.aio("order_failed", {"customer": "c2", "order": n})
    ids = [await publish.aio("order_failed", {"customer": "c1", "order": n}) for n in (1, 2, 3)]
    [run] = await finished(kinds, "too_many_failures")
    assert run.parameters == {"customer": "c1", "order": 3}
    assert seen_by(run)["count"] == 3 and seen_by(run)["event_ids"] == ids
    assert run.trigger_info is not None and run.trigger_info["event_ids"] == ids
    # Once every event is handled, c2's two failures (one short of the threshold) made no run
    await caught_up()
    assert [r.name for r in await kinds.list_runs(flow="too_many_failures")] == [run.name]


async def test_a_sequence_fires_only_for_events_in_order(kinds: RunStore) -> None:
    await publish.aio("validate_done", {"batch": "early"})  # nothing to follow yet
    extract = await publish.aio("extract_done", {"batch": "b1"})
    validate = await publish.aio("validate_done", {"batch": "b1"})
    [run] = await finished(kinds, "validated")
    assert seen_by(run)["events"] == [extract, validate]
    assert run.parameters == {"batch": "b1"}


async def test_a_wildcard_name_triggers_on_every_event_with_its_prefix(kinds: RunStore) -> None:
    await publish.aio("orders.created", {"region": "eu"})
    await publish.aio("orders.eu.shipped", {"region": "eu"})
    await publish.aio("ordersx", {"region": "us"})
    runs = await finished(kinds, "any_order", count=2)
    assert sorted(r.events[0]["name"] for r in runs) == ["orders.created", "orders.eu.shipped"]


async def test_debounce_launches_one_run_per_burst_with_every_event_id(kinds: RunStore) -> None:
    ids = [await publish.aio("file_landed", {"path": f"p{n}"}) for n in range(4)]
    [run] = await finished(kinds, "ingest")
    assert run.parameters == {"path": "p3"}
    assert seen_by(run)["coalesced_event_ids"] == ids
    # When a later burst of one event follows: the same sensor and key, so the clock
    # decides it after anything that the first burst left pending
    later = await publish.aio("file_landed", {"path": "later"})
    await finished(kinds, "ingest", count=2)
    await caught_up()
    # Then it has a run of its own, and the first burst made no other
    runs = sorted(await kinds.list_runs(flow="ingest"), key=lambda r: r.created_at)
    assert [r.name for r in runs][:1] == [run.name] and len(runs) == 2
    assert seen_by(runs[1])["coalesced_event_ids"] == [later]


async def test_an_sla_fires_when_the_finish_does_not_follow_the_start_in_time(
    kinds: RunStore, engine_env: dict[str, str]
) -> None:
    await publish.aio("load_started", {"day": "mon"})
    await publish.aio("load_finished", {"day": "mon"})
    tue = await publish.aio("load_started", {"day": "tue"})
    # While it waits, `sensors status` shows the deadline

    async def deadline_shown() -> bool:
        return "fires at" in (await tripwire_cli(engine_env, "sensors", "status")).stdout

    await eventually(deadline_shown, "the absence deadline in `tripwire sensors status`")
    [run] = await finished(kinds, "late_load")
    assert run.parameters == {"day": "tue"}
    assert run.trigger_info is not None and run.trigger_info["after_event_id"] == tue
    assert seen_by(run)["window"] is not None


async def test_sensors_status_explains_counts_and_sequence_positions(
    kinds: RunStore, engine_env: dict[str, str]
) -> None:
    await publish.aio("order_failed", {"customer": "c9", "order": 1})
    await publish.aio("extract_done", {"batch": "b"})

    async def explained() -> str | None:
        out = (await tripwire_cli(engine_env, "sensors", "status")).stdout
        return out if "count      1/3 (key" in out and "at step 1/2" in out else None

    out = await eventually(explained, "count and position in `tripwire sensors status`")
    assert "3 x order_failed within 0:01:00" in out
    assert "extract_done -> validate_done in order within 0:01:00" in out


async def test_an_absence_fires_each_empty_window_once_across_a_sigkilled_worker(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a worker with a 10 s absence check
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "check.py").write_text(
        "from triggers import trigger\n\n"
        "@trigger(absent='heartbeat', within='10s')\n"
        "def missed_heartbeat() -> None: ...\n"
    )
    env = {
        **os.environ,
        "TRIPWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}",
        # Long enough for a restarted worker to read what arrived while it was down
        "TRIPWIRE_ABSENCE_GRACE": "3",
    }
    log = tmp_path / "worker.log"
    within = timedelta(seconds=10)
    async with await RunStore.open(env["TRIPWIRE_DATABASE_URL"]) as store:

        async def windows() -> list[str]:
            runs = await store.list_runs(flow="missed_heartbeat", limit=100)
            return sorted(r.trigger_info["window_start"] for r in runs if r.trigger_info)

        with worker([flows], env, log) as first:
            await ready(first, log)
            # When it fired once, and is SIGKILLed
            first_window = (await eventually(windows, "a first absence", timeout=40))[0]
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        # And a heartbeat arrives while no worker runs, then a whole empty window passes
        beat = datetime.now(UTC)
        await publish.aio("heartbeat", time=beat)
        await asyncio.sleep(2 * within.total_seconds())
        with worker([flows], env, log) as second:
            await ready(second, log, times=2)
            until = datetime.now(UTC) - timedelta(seconds=1)
            start = datetime.fromisoformat(first_window)
            expected = []
            while start + within <= until:
                if not start <= beat < start + within:
                    expected.append(start.isoformat())
                start = wall_window(start + within, within, "UTC")[0]

            async def caught_up() -> list[str] | None:
                found = await windows()
                return found if set(expected) <= set(found) else None

            found = await eventually(caught_up, f"absences for {expected}", timeout=40)
    # Then every empty window fired once, and the one with the heartbeat never did
    assert found[: len(expected)] == expected
    assert wall_window(beat, within, "UTC")[0].isoformat() not in found

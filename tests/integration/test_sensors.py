"""Multi-event sensors on the real broker: correlation, conditions, filters and recovery."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from pathlib import Path

import pytest

from sensors.core.wire import decode_entry
from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import FLOWS, finished_run
from tests.fixtures.kafka import whole_topic
from tests.fixtures.processes import ready, worker
from tests.fixtures.waits import caught_up, eventually
from triggers import publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration


async def runs_of(store: RunStore, flow: str) -> list:  # type: ignore[type-arg]
    return await store.list_runs(flow=flow, limit=1000)


async def test_events_with_the_same_key_fire_together_and_map_per_event(store: RunStore) -> None:
    await publish.aio("orders_loaded", {"date": "2026-11-22", "rows": 10})
    await publish.aio("customers_loaded", {"date": "2026-11-23", "rows": 99})
    last = await publish.aio("customers_loaded", {"date": "2026-11-22", "rows": 20})
    run = await finished_run(store, last)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert run.parameters == {"date": "2026-11-22", "orders": 10, "customers": 20}
    assert sorted(e["dependency"] for e in run.events) == ["customers_loaded", "orders_loaded"]
    assert len(await runs_of(store, "daily_join")) == 1  # 2026-11-23 still waits


async def test_filters_and_or_conditions_decide_what_fires(engine: Engine, store: RunStore) -> None:
    small = await publish.aio("payment", {"amount": 5})
    await publish.aio("approved")
    assert engine.sensor_stage is not None
    await eventually(
        lambda: engine.sensor_stage.stats.filtered.get(("big_payment.trigger", "payment")),
        "the small payment to be filtered out",
    )
    entry = engine.sensor_stage.stats.filtered[("big_payment.trigger", "payment")]
    assert entry.last_event_id == small and entry.last_reason == "$.amount = 5 is not >= 100"
    big = await publish.aio("payment", {"amount": 250})
    run = await finished_run(store, big)
    assert run.parameters == {"amount": 250.0}
    assert sorted(e["dependency"] for e in run.events) == ["approved", "payment"]


async def test_a_sensor_deployed_after_an_event_arrived_does_not_fire_on_it(
    engine_env: dict[str, str],
) -> None:
    # Given an event published before the sensor was ever deployed
    early = await publish.aio("data_updated", {"rows": 1})
    await asyncio.sleep(0.05)  # broker timestamps have millisecond resolution
    # When the engine deploys the sensor and a later event arrives
    async with Engine(Settings(), discover_flows([FLOWS])) as engine:
        await engine.wait_ready(timeout=30)
        later = await publish.aio("data_updated", {"rows": 2})
        assert engine.store is not None
        await finished_run(engine.store, later)
        runs = await engine.store.list_runs(limit=1000)
    # Then only the later event started a run; the early one, on the same partition (an
    # event's key is its name) and so handled first, was ignored and started none
    assert [e["id"] for r in runs if r.flow == "refresh" for e in r.events] == [later]
    assert early not in {e["id"] for r in runs for e in r.events}
    assert engine.sensor_stage is not None and engine.sensor_stage.stats.ignored_before_deploy == 1


async def test_held_state_survives_a_sigkilled_worker(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, "TRIPWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"}
    log = tmp_path / "worker.log"
    async with await RunStore.open(env["TRIPWIRE_DATABASE_URL"]) as store:
        with worker([FLOWS], env, log) as first:
            await ready(first, log)
            # Given orders held by a worker, written to its changelog
            orders = await publish.aio("orders_loaded", {"date": "d1", "rows": 1})
            await eventually(lambda: _changelog_holds(engine_env), "the orders in the changelog")
            # When the worker is SIGKILLed
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        with worker([FLOWS], env, log) as second:
            await ready(second, log, times=2)
            # And the other event arrives after a restart
            customers = await publish.aio("customers_loaded", {"date": "d1", "rows": 2})
            run = await finished_run(store, customers, timeout=60)
        # Then exactly one run combines both
        assert {e["id"] for e in run.events} == {orders, customers}
        assert run.parameters == {"date": "d1", "orders": 1, "customers": 2}
        assert len(await runs_of(store, "daily_join")) == 1


async def test_a_stopped_worker_snapshots_what_it_holds_and_the_next_one_starts_from_it(
    engine_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sensors.stages.correlation_stage")
    async with Engine(Settings(), discover_flows([FLOWS])) as first:
        await first.wait_ready(timeout=30)
        # Given orders held by a worker
        orders = await publish.aio("orders_loaded", {"date": "d1", "rows": 1})
        assert first.correlation_stage is not None
        stage = first.correlation_stage
        await eventually(lambda: stage.correlator.held("daily_join.trigger"), "the orders held")
    # When it stops, and another worker starts
    async with Engine(Settings(), discover_flows([FLOWS])) as second:
        await second.wait_ready(timeout=30)
        # Then the other one loads what the first held from its snapshot
        await eventually(lambda: "loaded a snapshot of 1 keys" in caplog.text, "the snapshot")
        # And the other event makes one run of both
        customers = await publish.aio("customers_loaded", {"date": "d1", "rows": 2})
        assert second.store is not None
        run = await finished_run(second.store, customers)
        assert {e["id"] for e in run.events} == {orders, customers}


async def _changelog_holds(engine_env: dict[str, str]) -> bool:
    """Whether the correlation changelog holds a state change (not only the fences that
    each owner writes as it starts)."""
    bootstrap, topic = (
        engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"],
        engine_env["TRIPWIRE_TOPIC_SENSOR_STATE"],
    )
    records = await whole_topic(bootstrap, topic)
    return any(decode_entry(r.value).changes for r in records if r.value)


async def test_two_workers_start_exactly_one_run_per_satisfied_correlation(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    # Given 20 two-event sensors and two workers in one group
    flows = tmp_path / "flows"
    flows.mkdir()
    source = ["from triggers import trigger\n"]
    for i in range(20):
        source.append(
            f"@trigger(events=['a{i}', 'b{i}'], correlate_by='$.k')\n"
            f"def pair_{i}(k: str = '') -> None: ...\n"
        )
    (flows / "pairs.py").write_text("\n".join(source))
    env = {**os.environ, "TRIPWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"}
    log = tmp_path / "workers.log"
    with worker([flows], env, log) as one, worker([flows], env, log) as two:
        await ready(one, log, times=2)
        await ready(two, log, times=2)
        # When each sensor sees both events for two keys, with a duplicate of each 'a'
        for i in range(20):
            for key in ("k1", "k2"):
                event_id = str(uuid.uuid4())
                await publish.aio(f"a{i}", {"k": key}, id=event_id)
                await publish.aio(f"a{i}", {"k": key}, id=event_id)
                await publish.aio(f"b{i}", {"k": key})
        async with await RunStore.open(env["TRIPWIRE_DATABASE_URL"]) as store:

            async def all_done() -> bool:
                runs = await store.list_runs(limit=1000)
                return len(runs) >= 40 and all(r.finished_at for r in runs)

            await eventually(all_done, "40 finished runs", timeout=120)
            await caught_up()  # every event handled: a duplicate run would exist by now
            runs = await store.list_runs(limit=1000)
    # Then exactly one run per (sensor, key)
    pairs = sorted((r.flow, r.parameters["k"]) for r in runs)
    assert pairs == sorted((f"pair_{i}", k) for i in range(20) for k in ("k1", "k2"))
    assert all(r.phase == WorkflowPhase.SUCCEEDED for r in runs)

"""Scheduled triggers against the real store (SQLite and PostgreSQL) and broker.

The scheduler takes ``now`` as an argument, so downtime is simulated by passing a
later ``now``: the catch-up tests are exact, not timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sensors.core.sensor import Sensor
from sensors.runs.deploy import deploy, deployed_sensors
from sensors.runs.objects import ObjectStore
from sensors.runs.sensor_records import list_trigger_failures
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from sensors.runs.tables import schedule_state
from sensors.stages.kafka import ensure_topics, new_producer
from sensors.stages.scheduler import Scheduler
from tests.fixtures.engine import tripwire_cli
from tests.fixtures.waits import eventually
from triggers import schedule
from triggers.declarations import flow_spec
from triggers.settings import Settings

pytestmark = pytest.mark.integration

SCHEDULED = Path(__file__).parent / "scheduled"


@schedule(rate="1s", catchup="latest")
def every_second_latest() -> None: ...


@schedule(rate="1s", catchup="all")
def every_second_all() -> None: ...


@schedule(rate="1s", catchup="none")
def every_second_none() -> None: ...


@schedule(rate="1s", catchup="all", max_catchup=3, parameters={"day": "$schedule.time"})
def with_tick(scheduled_at: datetime, day: str = "", table: str = "sales") -> None: ...


@schedule(rate="1s", parameters={"count": "$schedule.time"})
def wrong_type(count: int = 0) -> None: ...


FLOWS = [every_second_latest, every_second_all, every_second_none, with_tick, wrong_type]


@pytest.fixture
async def parts(
    run_store: RunStore, kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> AsyncIterator[tuple[RunService, dict[str, Sensor]]]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        home=tmp_path,
        topic_run_requests=f"{unique_name}.run-requests",
        topic_partitions=1,
    )
    await ensure_topics(settings, [settings.topic_run_requests])
    await deploy(run_store, [flow_spec(f) for f in FLOWS], project="p", domain="d")
    sensors = await deployed_sensors(run_store, project="p", domain="d")
    producer = new_producer(settings)
    await producer.start()
    try:
        service = RunService(settings, run_store, ObjectStore(settings.objects_root), producer)
        yield service, {s.flow.name: s for s in sensors}
    finally:
        await producer.stop()


def scheduler_of(
    parts: tuple[RunService, dict[str, Sensor]], flow: str, owns: Callable[[Sensor], bool] = bool
) -> Scheduler:
    service, sensors = parts
    return Scheduler(Settings(), service._store, service, lambda s: owns(s), [sensors[flow]])


async def ticks_run(store: RunStore, flow: str) -> list[datetime]:
    runs = await store.list_runs(flow=flow, limit=10_000)
    assert len({r.name for r in runs}) == len(runs)
    return sorted(r.scheduled_at for r in runs if r.scheduled_at is not None)


def first_tick(sensor: Sensor) -> datetime:
    return sensor.deployed_at.replace(microsecond=0) + timedelta(seconds=1)


def seconds(ticks: list[datetime]) -> list[int]:
    return [int(t.timestamp()) for t in ticks]


async def test_after_downtime_catchup_latest_runs_the_most_recent_missed_tick_once(
    parts: Any, run_store: RunStore
) -> None:
    # Given a per-second schedule deployed at t0, and no worker for ten seconds
    sensor = parts[1]["every_second_latest"]
    now = sensor.deployed_at + timedelta(seconds=10.5)
    # When a scheduler comes back
    await scheduler_of(parts, "every_second_latest").run_once(now)
    # Then the newest (on-time) tick runs, plus the most recent missed one: not the 8 before
    newest = int(now.timestamp())
    assert seconds(await ticks_run(run_store, "every_second_latest")) == [newest - 1, newest]


async def test_after_downtime_catchup_all_runs_every_missed_tick_oldest_first(
    parts: Any, run_store: RunStore
) -> None:
    sensor = parts[1]["every_second_all"]
    now = sensor.deployed_at + timedelta(seconds=10.5)
    await scheduler_of(parts, "every_second_all").run_once(now)
    ticks = seconds(await ticks_run(run_store, "every_second_all"))
    first = int(sensor.deployed_at.timestamp()) + 1
    assert ticks == list(range(first, int(now.timestamp()) + 1))
    runs = await run_store.list_runs(flow="every_second_all", limit=100)
    by_creation = sorted(runs, key=lambda r: (r.created_at, r.name))
    assert [r.scheduled_at for r in by_creation] == sorted(r.scheduled_at for r in runs)


async def test_catchup_all_is_capped_by_max_catchup(parts: Any, run_store: RunStore) -> None:
    sensor = parts[1]["with_tick"]
    now = sensor.deployed_at + timedelta(hours=1, seconds=0.5)
    await scheduler_of(parts, "with_tick").run_once(now)
    newest = int(now.timestamp())
    # Three missed ticks (the newest ones) plus the on-time one
    assert seconds(await ticks_run(run_store, "with_tick")) == list(range(newest - 3, newest + 1))


async def test_after_downtime_catchup_none_skips_the_missed_ticks(
    parts: Any, run_store: RunStore
) -> None:
    sensor = parts[1]["every_second_none"]
    now = sensor.deployed_at + timedelta(seconds=10.5)
    await scheduler_of(parts, "every_second_none").run_once(now)
    assert seconds(await ticks_run(run_store, "every_second_none")) == [int(now.timestamp())]


async def test_the_run_gets_its_tick_as_parameters_and_as_its_scheduled_time(
    parts: Any, run_store: RunStore
) -> None:
    sensor = parts[1]["with_tick"]
    now = first_tick(sensor) + timedelta(seconds=0.5)
    await scheduler_of(parts, "with_tick").run_once(now)
    [run] = await run_store.list_runs(flow="with_tick")
    assert run.scheduled_at is not None
    assert run.scheduled_at == first_tick(sensor)
    assert datetime.fromisoformat(run.parameters["scheduled_at"]) == run.scheduled_at
    assert run.parameters["day"] == run.scheduled_at.isoformat()
    assert run.parameters["table"] == "sales"
    assert run.sensor_id == "with_tick.schedule" and run.events == []


async def test_a_tick_that_does_not_fit_a_parameter_is_a_trigger_failure_not_a_crash(
    parts: Any, run_store: RunStore
) -> None:
    sensor = parts[1]["wrong_type"]
    scheduler = scheduler_of(parts, "wrong_type")
    await scheduler.run_once(first_tick(sensor) + timedelta(seconds=0.5))
    [failure] = await list_trigger_failures(run_store, sensor_id="wrong_type.schedule")
    assert "parameter 'count' expects int" in failure.reason
    assert await run_store.list_runs(flow="wrong_type") == []
    # And the scheduler goes on with the next tick
    await scheduler.run_once(first_tick(sensor) + timedelta(seconds=1.5))
    assert len(await list_trigger_failures(run_store, sensor_id="wrong_type.schedule")) == 2


async def test_two_schedulers_and_restarts_never_run_a_tick_twice(
    parts: Any, run_store: RunStore
) -> None:
    # Given two schedulers that both believe they own the trigger (a rebalance)
    sensor = parts[1]["every_second_all"]
    one, two = scheduler_of(parts, "every_second_all"), scheduler_of(parts, "every_second_all")
    # When they pass over the same ticks together, again and again (restarts replay)
    for step in (2.5, 2.5, 4.5, 6.5, 6.5):
        now = sensor.deployed_at + timedelta(seconds=step)
        await asyncio.gather(one.run_once(now), two.run_once(now))
    # Then every tick ran exactly once
    ticks = seconds(await ticks_run(run_store, "every_second_all"))
    first = int(sensor.deployed_at.timestamp()) + 1
    assert ticks == list(
        range(first, int((sensor.deployed_at + timedelta(seconds=6.5)).timestamp()) + 1)
    )
    assert one.fired + two.fired == len(ticks)


async def test_a_trigger_that_moves_between_workers_and_back_loses_and_doubles_no_tick(
    parts: Any, run_store: RunStore
) -> None:
    sensor = parts[1]["every_second_all"]
    owner = {"one"}
    one = scheduler_of(parts, "every_second_all", owns=lambda s: "one" in owner)
    two = scheduler_of(parts, "every_second_all", owns=lambda s: "two" in owner)
    for step, who in ((2.5, "one"), (4.5, "two"), (6.5, "one"), (8.5, "two")):
        owner.clear()
        owner.add(who)
        now = sensor.deployed_at + timedelta(seconds=step)
        await asyncio.gather(one.run_once(now), two.run_once(now))
    ticks = seconds(await ticks_run(run_store, "every_second_all"))
    last = int((sensor.deployed_at + timedelta(seconds=8.5)).timestamp())
    assert ticks == list(range(int(sensor.deployed_at.timestamp()) + 1, last + 1))
    assert one.fired + two.fired == len(ticks)


async def test_ticks_decided_by_an_owner_that_crashed_are_fired_by_the_next(
    parts: Any, run_store: RunStore
) -> None:
    # Given an owner that decided a tick (cursor moved, tick pending) and then died
    sensor = parts[1]["every_second_none"]
    tick = first_tick(sensor)
    async with run_store.connection(write=True) as conn:
        await conn.execute(
            schedule_state.insert().values(
                project="p",
                domain="d",
                sensor_id=sensor.id,
                cursor=tick,
                pending=[tick.isoformat()],
                version=3,
                updated_at=datetime.now(UTC),
            )
        )
    # When the next owner passes long after (catchup none would skip a missed tick)
    await scheduler_of(parts, "every_second_none").run_once(
        tick + timedelta(minutes=5, seconds=0.5)
    )
    # Then the decided tick still runs, and nothing is pending any more
    ticks = await ticks_run(run_store, "every_second_none")
    assert tick in ticks
    async with run_store.connection() as conn:
        row = (await conn.execute(sa.select(schedule_state.c.pending))).one()
    assert row.pending == []


async def test_a_scheduler_fires_only_what_it_owns(parts: Any, run_store: RunStore) -> None:
    sensor = parts[1]["every_second_all"]
    await scheduler_of(parts, "every_second_all", owns=lambda s: False).run_once(
        sensor.deployed_at + timedelta(seconds=3.5)
    )
    assert await run_store.list_runs(flow="every_second_all") == []


async def test_two_worker_processes_run_each_tick_once_across_a_leader_change(
    engine_env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    # Given two `tripwire worker` processes serving a per-second schedule (catchup all)
    ticks_dir = tmp_path / "ticks"
    ticks_dir.mkdir()
    env = {**os.environ, "TRIPWIRE_DATABASE_URL": pg_url, "TICKS_DIR": str(ticks_dir)}
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = []
    try:
        for log in logs:
            with log.open("wb") as out:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "sensors", "worker", str(SCHEDULED)],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        for log in logs:
            await eventually(lambda log=log: b"worker ready" in log.read_bytes(), "both workers")

        def last_tick(log: Path) -> str:
            """The newest tick this worker fired (ISO time), or "" if none."""
            marker = "schedule ticker.schedule: tick "
            lines = [line for line in log.read_text().splitlines() if marker in line]
            return lines[-1].split(marker)[1].split()[0] if lines else ""

        async with await RunStore.open(pg_url) as store:

            async def count() -> int:
                return len(await store.list_runs(flow="ticker", limit=10_000))

            await eventually(lambda: _at_least(count, 4), "four ticks", timeout=30)
            # When the worker that schedules now is killed mid-stream (the schedule may
            # have moved once already, when the second worker joined the group)
            leader = max((0, 1), key=lambda i: last_tick(logs[i]))
            newest = last_tick(logs[leader])
            workers[leader].kill()
            before = await count()
            survivor = logs[1 - leader]
            # Then the other takes over and goes on ticking
            await eventually(
                lambda: last_tick(survivor) > newest,
                "the other worker to take the schedule over",
                timeout=40,
            )
            await eventually(lambda: _at_least(count, before + 4), "four more ticks", timeout=30)
            workers[1 - leader].send_signal(signal.SIGTERM)
            workers[1 - leader].wait(20)
            ticks = await ticks_run(store, "ticker")
        # And each tick from the first to the last ran exactly once: none lost, none doubled
        assert seconds(ticks) == list(range(seconds(ticks)[0], seconds(ticks)[-1] + 1))
        # And the flow got its tick as scheduled_at
        written = {p.name: p.read_text() for p in ticks_dir.iterdir()}
        assert written, "no run wrote its tick"
        async with await RunStore.open(pg_url) as store:
            for name, value in written.items():
                run = await store.get_run(name)
                assert run.scheduled_at is not None
                assert datetime.fromisoformat(value) == run.scheduled_at
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(10)


async def _at_least(count: Callable[[], Any], n: int) -> bool:
    return bool(await count() >= n)


async def test_sensors_list_and_status_show_a_schedule_and_its_next_tick(
    run_store: RunStore, store_url: str, engine_env: dict[str, str]
) -> None:
    await deploy(
        run_store,
        [flow_spec(with_tick)],
        project=engine_env["TRIPWIRE_PROJECT"],
        domain="development",
    )
    env = engine_env | {"TRIPWIRE_DATABASE_URL": store_url}
    listed = await tripwire_cli(env, "sensors", "list")
    assert listed.returncode == 0, listed.stderr
    assert "the clock" in listed.stdout and "every 0:00:01, catchup all" in listed.stdout
    before = datetime.now(UTC)
    shown = await tripwire_cli(env, "sensors", "status", "with_tick.schedule", "--json")
    after = datetime.now(UTC)
    assert shown.returncode == 0, shown.stderr
    [status] = json.loads(shown.stdout)
    tick = datetime.fromisoformat(status["next_tick"])
    assert before < tick <= after + timedelta(seconds=1)
    assert tick.microsecond == 0
    assert status["sensor"]["schedule"]["rate"] == "PT1S"

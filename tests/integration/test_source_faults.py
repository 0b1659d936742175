"""Event sources under faults: killed between publishing and acknowledging, and a bus
server that stops and starts again."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.sources.store import deploy_sources
from tests.fixtures.buses import Bus, Postgres, Rabbit, bus, private_server
from tests.fixtures.db import PrivatePostgres
from tests.fixtures.processes import ready, tripwire_process
from tests.fixtures.sources import SOURCE_FLOWS, orders, ran, running, state
from tests.fixtures.waits import caught_up, eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration


async def event_ids(settings: Settings) -> list[str]:
    """The ids of every event on the events topic, in no particular order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.require_bootstrap())
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(settings.topic_events) or set()
        tps = [TopicPartition(settings.topic_events, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        ids: list[str] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                ids += [dict(r.headers)["ce_id"].decode() for r in records]
        return ids
    finally:
        await consumer.stop()


@pytest.mark.parametrize("on_bus", ["nats", "mqtt", "rabbitmq", "redis", "kafka"], indirect=True)
async def test_a_source_killed_after_publishing_and_before_acking_runs_the_flow_once(
    on_bus: Bus, tmp_path: Path
) -> None:
    extra = {"ack_wait": 2} if on_bus.kind == "nats" else {}
    spec = on_bus.source(**extra)
    settings = Settings(sources=False)  # this worker only senses and launches
    log = tmp_path / "sources.log"
    env = {**os.environ, "TRIPWIRE_SOURCE_LEASE": "3"}
    async with Engine(settings, discover_flows([SOURCE_FLOWS])) as engine:
        assert engine.store is not None
        await engine.wait_ready()
        await deploy_sources(engine.store, [spec], project=settings.project, domain=settings.domain)
        # Given a `tripwire sources run` that dies right after Kafka acknowledged an event
        crashing = {**env, "TRIPWIRE_CRASH_AT": "source.published"}
        with tripwire_process(["sources", "run"], crashing, log) as first:
            await ready(first, log, says=b"connected to")
            await on_bus.send({"order": "o-9", "amount": 9}, msg_id="m-9")
            # When it is killed there, before acknowledging the message upstream
            await eventually(lambda: first.poll() is not None, "the crash", timeout=60)
            assert first.returncode == -9
        await eventually(lambda: _published(settings, 1), "the event of the first process")
        # Then a restarted one gets the message again, and publishes it again
        with tripwire_process(["sources", "run"], env, log) as second:
            await ready(second, log, times=2, says=b"connected to")
            await eventually(lambda: _twice(settings), "the redelivered event", timeout=90)
            # And the flow ran once
            await ran(engine.store, "o-9")
            await caught_up(settings)  # both events handled: a second run would exist now
            assert [r.parameters["order"] for r in await orders(engine.store)] == ["o-9"]


async def _twice(settings: Settings) -> bool:
    return await _published(settings, 2)


async def _published(settings: Settings, count: int) -> bool:
    """Whether the events topic holds ``count`` events (or more: a bus may deliver again
    what a slow source acknowledged late), all with one id."""
    ids = await event_ids(settings)
    assert len(set(ids)) <= 1, f"a redelivery made a new event id: {ids}"
    return len(ids) >= count


@pytest.fixture
def private_bus(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> Iterator[tuple[Bus, object]]:
    """A bus whose server this test may stop and start: a private one, or (RabbitMQ) the
    machine's, through rabbitmqctl stop_app and start_app."""
    kind = request.param
    if kind == "rabbitmq":
        rabbit = Rabbit("amqp://guest:guest@127.0.0.1:5672/", unique_name)
        rabbit.require()
        yield rabbit, RabbitApp()
        RabbitApp().start()
        return
    if kind == "postgres":
        server: PrivatePostgres = request.getfixturevalue("private_postgres")
        yield Postgres(server.url.replace("+asyncpg", ""), unique_name), server
        return
    with private_server(kind, tmp_path) as (server, url):
        yield bus(kind, unique_name).__class__(url, unique_name), server


class RabbitApp:
    """The machine's RabbitMQ, stopped and started without stopping its Erlang node."""

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        subprocess.run(
            ["rabbitmqctl", "await_startup"], check=True, capture_output=True, timeout=120
        )


@pytest.mark.parametrize(
    "private_bus", ["redis", "nats", "mqtt", "postgres", "rabbitmq"], indirect=True
)
async def test_a_source_reconnects_when_its_server_comes_back(
    private_bus: tuple[Bus, object], engine_env: dict[str, str]
) -> None:
    on_bus, server = private_bus
    await on_bus.prepare()
    spec = on_bus.source()
    async with running(spec) as engine:
        assert engine.store is not None
        await on_bus.send({"order": "before", "amount": 1}, msg_id="before")
        await ran(engine.store, "before")
        # When the bus's server stops
        await asyncio.to_thread(server.stop)  # type: ignore[attr-defined]
        runner = engine.source_supervisor.runners[spec.name][0]  # type: ignore[union-attr]
        await eventually(lambda: state(engine, spec.name) == "reconnecting", "the source noticed")
        assert runner.stats.last_error
        # And starts again
        await asyncio.to_thread(server.start)  # type: ignore[attr-defined]
        await on_bus.prepare()
        # Then the source connects again by itself, and what is published now runs the flow
        await eventually(
            lambda: state(engine, spec.name) == "connected", "the reconnect", timeout=60
        )
        await on_bus.send({"order": "after", "amount": 2}, msg_id="after")
        await ran(engine.store, "after")

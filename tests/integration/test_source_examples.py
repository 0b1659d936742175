"""examples/sources/ works: each publisher script, run as a producer would run it, makes
its source trigger its flow, against the servers this machine runs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aio_pika
import pytest

from sensors.engine import Engine
from sensors.registry import discover_flows, discover_sources
from sensors.runs.phases import WorkflowPhase
from tests.fixtures.buses import bus
from tests.fixtures.waits import eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples" / "sources"
# script -> the flow its message runs
SCRIPTS = {
    "nats_orders.py": "pack_order",
    "mqtt_machines.py": "cool_down",
    "rabbitmq_invoices.py": "book_invoice",
    "redis_signups.py": "welcome_user",
    "kafka_payments.py": "reconcile_payment",
    "postgres_orders.py": "notify_customer",
}


async def test_each_source_example_triggers_its_flow(
    engine_env: dict[str, str], kafka_bootstrap: str
) -> None:
    for kind in ("nats", "mqtt", "rabbitmq", "redis", "postgres"):
        bus(kind, "examples", kafka_bootstrap).require()
    await _purge_invoices()  # what earlier runs left in the machine's queue is not ours
    await _shop_stream()  # the shop created its JetStream stream when it was set up
    sources = discover_sources([EXAMPLES])
    assert len(sources) == len(SCRIPTS)
    async with Engine(Settings(), discover_flows([EXAMPLES]), sources=sources) as engine:
        assert engine.store is not None and engine.source_supervisor is not None
        await engine.wait_ready()
        runners = engine.source_supervisor.runners
        await eventually(
            lambda: (
                len(runners) == len(SCRIPTS)
                and all(r.stats.state == "connected" for r, _, _ in runners.values())
            ),
            "every example source connected",
            timeout=60,
        )
        for script in SCRIPTS:
            done = await asyncio.create_subprocess_exec(
                sys.executable, str(EXAMPLES / script), env=dict(os.environ)
            )
            assert await done.wait() == 0, script

        async def flows_that_ran() -> set[str]:
            found = await engine.store.list_runs(phase=WorkflowPhase.SUCCEEDED, limit=100)  # type: ignore[union-attr]
            return {r.flow for r in found}

        await eventually(
            lambda: _all(flows_that_ran(), set(SCRIPTS.values())), "every flow ran", timeout=90
        )


async def _all(ran: object, wanted: set[str]) -> bool:
    return wanted <= await ran  # type: ignore[operator]


async def _purge_invoices() -> None:
    try:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/", timeout=10)
    except Exception as exc:  # pragma: no cover - require() said it listens
        pytest.fail(f"RabbitMQ refused the connection: {exc}")
    async with connection:
        channel = await connection.channel()
        await (await channel.declare_queue("invoices", durable=True)).purge()


async def _shop_stream() -> None:
    import nats

    client = await nats.connect("nats://127.0.0.1:4222")
    try:
        await client.jetstream().add_stream(name="SHOP_ORDERS", subjects=["shop.orders.>"])
    finally:
        await client.close()

"""Event sources against the real servers: a message on each bus runs the flow, once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.buses import Bus
from tests.integration.conftest import eventually
from triggers.settings import Settings
from triggers.sources import EventSource

FLOWS = Path(__file__).parent / "source_flows"
KINDS = ["nats", "nats-core", "mqtt", "rabbitmq", "redis", "kafka", "postgres"]


@contextlib.asynccontextmanager
async def running(*sources: EventSource, **settings: Any) -> AsyncIterator[Engine]:
    """A worker serving the orders flow and ``sources``, each source connected."""
    async with Engine(
        Settings(source_lease=3, **settings), discover_flows([FLOWS]), sources=sources
    ) as engine:
        await engine.wait_ready()
        for spec in sources:
            await eventually(
                lambda spec=spec: state(engine, spec.name) == "connected", f"{spec.name}"
            )
        yield engine


def state(engine: Engine, name: str) -> str | None:
    assert engine.source_supervisor is not None
    runner = engine.source_supervisor.runners.get(name)
    return runner[0].stats.state if runner else None


async def orders(store: RunStore) -> list[RunRecord]:
    return [
        r
        for r in await store.list_runs(flow="take_order", limit=1000)
        if r.phase == WorkflowPhase.SUCCEEDED
    ]


async def ran(store: RunStore, order: str) -> RunRecord:
    async def probe() -> RunRecord | None:
        found = [r for r in await orders(store) if r.parameters.get("order") == order]
        return found[0] if found else None

    found: RunRecord = await eventually(probe, f"a run for order {order}", timeout=60)
    return found


@pytest.mark.parametrize("on_bus", KINDS, indirect=True)
async def test_a_message_on_the_bus_runs_the_flow_with_its_fields(on_bus: Bus) -> None:
    spec = on_bus.source()
    async with running(spec) as engine:
        assert engine.store is not None
        # When a producer publishes on its bus as it always did
        await on_bus.send({"order": "o-1", "amount": 120})
        # Then the flow runs with the message's fields as parameters
        run = await ran(engine.store, "o-1")
        assert run.parameters == {"order": "o-1", "amount": 120}
        (event,) = run.events
        assert event["source"] == f"tripwire://sources/{spec.name}"
        # And the source counts the message in and the event out
        runner = engine.source_supervisor.runners[spec.name][0]  # type: ignore[union-attr]
        assert (runner.stats.messages_in, runner.stats.events_out) == (1, 1)

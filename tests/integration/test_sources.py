"""Event sources against the real servers: a message on each bus runs the flow, once."""

from __future__ import annotations

import pytest

from tests.fixtures.buses import Bus
from tests.fixtures.sources import ran, running

pytestmark = pytest.mark.integration

KINDS = ["nats", "nats-core", "mqtt", "rabbitmq", "redis", "kafka", "postgres"]


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

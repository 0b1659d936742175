"""The run store on SQLite and PostgreSQL: each event of a sensor is consumed by one run at most,
whatever names the workers that decided the runs gave them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from sensors.runs.models import NewRun
from sensors.runs.store import RunStore
from sensors.runs.tables import consumed_events, run_phases
from tests.fixtures.runs import new_run
from triggers.errors import ConsumedError

pytestmark = pytest.mark.integration


def consuming(
    name: str, *event_ids: str, sensor: str = "flow.trigger", project: str = "p"
) -> NewRun:
    """A sensor's run request that consumes ``event_ids``."""
    request = new_run(name, sensor=sensor, project=project)
    return NewRun.model_validate({**request.model_dump(), "consumes": list(event_ids)})


async def claims(store: RunStore) -> list[tuple[Any, ...]]:
    query = sa.select(
        consumed_events.c.project,
        consumed_events.c.sensor_id,
        consumed_events.c.event_id,
        consumed_events.c.run_name,
    ).order_by(*consumed_events.primary_key.columns)
    async with store.connection() as conn:
        return [tuple(row) for row in (await conn.execute(query)).all()]


async def test_a_run_of_another_name_from_an_event_its_sensor_consumed_is_refused_and_not_created(
    run_store: RunStore,
) -> None:
    # Given a run that consumed e1 and e2
    await run_store.create_run(consuming("flow-a", "e1", "e2"))
    # When another worker decides a run of another name from e2 and e3
    with pytest.raises(ConsumedError) as refused:
        await run_store.create_run(consuming("flow-b", "e2", "e3"))
    # Then it names the sensor, the event and the run that consumed it, and says why
    message = str(refused.value)
    assert "'flow.trigger'" in message and "'e2' by run 'flow-a'" in message
    assert "'flow-b' was not created" in message and "nothing needs doing" in message
    assert "'e1'" not in message and "'e3'" not in message
    # And nothing of it was written: no run, no history, no claim of e3
    assert [run.name for run in await run_store.list_runs()] == ["flow-a"]
    async with run_store.connection() as conn:
        history: list[str] = list((await conn.execute(sa.select(run_phases.c.name))).scalars())
    assert history == ["flow-a"]
    assert await claims(run_store) == [
        ("p", "flow.trigger", "e1", "flow-a"),
        ("p", "flow.trigger", "e2", "flow-a"),
    ]


async def test_racing_runs_of_different_names_from_the_same_event_create_exactly_one(
    run_store: RunStore,
) -> None:
    results = await asyncio.gather(
        *(run_store.create_run(consuming(f"flow-{n}", "e1", f"own-{n}")) for n in range(10)),
        return_exceptions=True,
    )
    created = [run.name for run, made in (r for r in results if isinstance(r, tuple)) if made]
    refused = [result for result in results if isinstance(result, ConsumedError)]
    assert (len(created), len(refused)) == (1, 9)
    assert [run.name for run in await run_store.list_runs()] == created


async def test_the_same_consuming_request_twice_creates_one_run_and_raises_nothing(
    run_store: RunStore,
) -> None:
    first, created = await run_store.create_run(consuming("flow-a", "e1", "e2"))
    again, created_again = await run_store.create_run(consuming("flow-a", "e1", "e2"))
    assert (created, created_again) == (True, False)
    assert again.created_at == first.created_at
    assert len(await run_store.list_runs()) == 1
    assert len(await claims(run_store)) == 2


async def test_the_same_events_consumed_by_two_sensors_create_a_run_of_each(
    run_store: RunStore,
) -> None:
    _, first = await run_store.create_run(consuming("flow-a", "e1", sensor="flow.one"))
    _, second = await run_store.create_run(consuming("flow-b", "e1", sensor="flow.two"))
    assert first and second
    assert len(await run_store.list_runs()) == 2
    assert [claim[1:] for claim in await claims(run_store)] == [
        ("flow.one", "e1", "flow-a"),
        ("flow.two", "e1", "flow-b"),
    ]


async def test_the_same_sensor_in_two_projects_consumes_the_same_event_in_each(
    run_store: RunStore,
) -> None:
    # The router fires every project's sensor of that id on the event, under names that differ
    _, first = await run_store.create_run(consuming("flow-a", "e1", project="a"))
    _, second = await run_store.create_run(consuming("flow-b", "e1", project="b"))
    assert first and second
    assert [(claim[0], claim[3]) for claim in await claims(run_store)] == [
        ("a", "flow-a"),
        ("b", "flow-b"),
    ]


async def test_runs_that_consume_nothing_are_created_as_before(run_store: RunStore) -> None:
    # Given a run of the sensor that consumed e1
    await run_store.create_run(consuming("flow-a", "e1"))
    # Then a run of the sensor that consumes nothing, and a run of no sensor, are created
    # (with no sensor there is nothing to claim, whatever it says it consumes)
    _, by_sensor = await run_store.create_run(new_run("flow-b"))
    by_hand = consuming("flow-c", "e1").model_copy(update={"sensor_id": None, "trigger": None})
    _, made_by_hand = await run_store.create_run(by_hand)
    assert by_sensor and made_by_hand
    assert [claim[3] for claim in await claims(run_store)] == ["flow-a"]

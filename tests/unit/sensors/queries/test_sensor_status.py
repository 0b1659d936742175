"""A sensor's status as `tripwire sensors status` and the web page read it from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sensors.queries.sensors import dependency_state, describe, key_line, sensor_statuses
from sensors.runs.deploy import deploy
from sensors.runs.status import replace_holds
from sensors.runs.store import RunStore
from tests.fixtures.records import hold
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.errors import StoreError


@trigger(events=["payment_received", "parcel_packed"], correlate_by="$.order")
def ship(order: int = 0) -> None: ...


@trigger(events=["orders_loaded", "customers_loaded"])
def join() -> None: ...


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as opened:
        await deploy(opened, [flow_spec(ship), flow_spec(join)], project="p", domain="d")
        yield opened


async def test_a_correlated_sensor_shows_what_each_key_holds_and_awaits(store: RunStore) -> None:
    # Given one key holding a payment and another a packed parcel: neither fires
    await replace_holds(
        store,
        "p",
        "d",
        {
            ("ship.trigger", "7"): [hold("ship.trigger", "7", "payment_received", "e1")],
            ("ship.trigger", "8"): [hold("ship.trigger", "8", "parcel_packed", "e2", 1)],
        },
    )
    # When its status is read
    [status] = await sensor_statuses(store, project="p", domain="d", only="ship.trigger")
    # Then each key says what it holds and what it awaits, newest key first
    assert [key_line(k) for k in status.keys] == [
        "key 8: parcel_packed ✓, payment_received awaited",
        "key 7: payment_received ✓, parcel_packed awaited",
    ]
    # And no dependency reads as satisfied: each holds an event for one key only
    assert [dependency_state(status, d) for d in status.dependencies] == [
        "held for 1 key",
        "held for 1 key",
    ]


async def test_a_sensor_without_correlate_by_has_no_keys_and_a_satisfied_dependency(
    store: RunStore,
) -> None:
    await replace_holds(
        store, "p", "d", {("join.trigger", ""): [hold("join.trigger", "", "orders_loaded", "e1")]}
    )
    [status] = await sensor_statuses(store, project="p", domain="d", only="join.trigger")
    assert status.keys == []
    assert [dependency_state(status, d) for d in status.dependencies] == ["satisfied", "awaited"]


async def test_a_flows_name_shows_its_sensors(store: RunStore) -> None:
    [status] = await sensor_statuses(store, project="p", domain="d", only="ship")
    assert status.sensor.sensor_id == "ship.trigger"


async def test_an_unknown_name_is_refused_with_a_close_id_suggested(store: RunStore) -> None:
    with pytest.raises(StoreError, match=r"no sensor 'shp.trigger' \(did you mean 'ship.trigger'"):
        await sensor_statuses(store, project="p", domain="d", only="shp.trigger")


async def test_a_sensor_keyed_by_two_paths_names_them_as_json(store: RunStore) -> None:
    [status] = await sensor_statuses(store, project="p", domain="d", only="ship.trigger")
    two = status.sensor.model_copy(
        update={"correlate_by": {"payment_received": "$.order", "parcel_packed": "$.id"}}
    )
    assert describe(two).endswith(', by {"payment_received": "$.order", "parcel_packed": "$.id"}')

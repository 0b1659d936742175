"""The engine's own records: packed offers, changelog entries, and run requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.core.sensor import build_sensors
from sensors.core.types import Arrival, Decisions, Offer, make_fire
from sensors.core.wire import decode_offers, encode_keyed, pack, partition_of, run_request
from sensors.runs.models import NewRun
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.envelope import Envelope

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


def offer(sensor: str, key: str, n: int, payload: dict[str, object] | None = None) -> Offer:
    envelope = Envelope("orders", f"id-{n}", "test", T0, payload or {"n": n, "big": 10**30})
    return Offer(sensor, "orders", key, Arrival(envelope, T0 + timedelta(seconds=1)))


@given(st.lists(st.text(max_size=40), max_size=60), st.integers(2, 300))
def test_packing_keeps_every_item_in_order_and_records_under_the_limit(
    items: list[str], limit: int
) -> None:
    records = pack(items, limit)
    assert [item for record in records for item in json.loads(record)] == items
    for record in records:
        # Only an item too big for any record may exceed the limit, and then alone.
        assert len(record) <= limit or len(json.loads(record)) == 1


def test_offers_round_trip_exactly_and_go_to_their_keys_partition() -> None:
    offers = [offer(f"f{i % 3}.trigger", f"2026-11-{i % 5:02d}", i) for i in range(50)]
    records = encode_keyed(offers, partitions=4, limit=1000)
    assert len(records) > 4  # the limit split partitions into several records
    back = []
    for partition, value in records:
        for o in decode_offers(value):
            assert partition == partition_of(o.sensor_id, o.key, 4)
            back.append(o)
    assert sorted(back, key=lambda o: o.arrival.envelope.id) == sorted(
        offers, key=lambda o: o.arrival.envelope.id
    )
    assert back[0].arrival.envelope.payload["big"] == 10**30  # no float rounding


def test_the_partition_of_a_key_is_stable_across_processes() -> None:
    # crc32, not hash(): a fixed value, whatever PYTHONHASHSEED says
    assert partition_of("daily_join.trigger", "2026-11-23", 12) == 10


def test_a_malformed_offers_record_raises_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_offers(b'[["only a sensor id"]]')


@trigger(events=["orders", "customers"], within="1h")
def daily_join(rows: int = 0, day: str = "") -> None: ...


def test_a_run_request_is_the_json_of_a_new_run_with_everything_the_launcher_needs() -> None:
    [sensor] = build_sensors(
        [flow_spec(daily_join)], project="p", domain="d", deployed_at=T0 - timedelta(days=1)
    )
    used = {
        "orders": Arrival(Envelope("orders", "o1", "etl", T0, {"rows": "7"}), T0),
        # no event time: arrival time stands in, and orders it after o1
        "customers": Arrival(
            Envelope("customers", "c1", "etl", None, {"day": "x"}), T0 + timedelta(seconds=1)
        ),
    }
    decisions = Decisions()
    make_fire(sensor, used, decisions)
    [fire] = decisions.fires

    request = NewRun.model_validate_json(run_request(fire))

    assert request.name == fire.run_name and request.sensor_id == "daily_join.trigger"
    assert (request.project, request.domain, request.flow) == ("p", "d", "daily_join")
    assert request.entrypoint == sensor.flow.entrypoint.model_dump()
    assert request.parameters == {"rows": 7, "day": "x"}
    assert [(e["id"], e["dependency"]) for e in request.events] == [
        ("o1", "orders"),
        ("c1", "customers"),
    ]
    assert datetime.fromisoformat(request.events[0]["time"]) == T0
    assert request.events[1]["time"] is None

"""The correlator: which events fire which sensors, with what parameters, under which name."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sensors.correlate import Arrival, Correlator
from sensors.sensor import Sensor, build_sensors, run_name_for
from triggers import trigger
from triggers.decorators import flow_spec
from triggers.envelope import Envelope

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)
DEPLOYED = T0 - timedelta(days=1)


@trigger(event="data_updated")
def refresh(table: str = "sales", rows: int = 0) -> None: ...


@trigger(events=["orders", "customers"], within="1h")
def join(rows: int = 0, region: str = "eu") -> None: ...


@trigger(event="other")
def unrelated() -> None: ...


def sensors(*flows: object) -> list[Sensor]:
    return build_sensors(
        [flow_spec(f) for f in flows],
        project="p",
        domain="d",
        deployed_at=DEPLOYED,  # type: ignore[arg-type]
    )


def arrival(name: str, id: str, *, at: datetime = T0, **payload: object) -> Arrival:
    return Arrival(Envelope(name=name, id=id, source="s", time=at, payload=payload), at)


def test_a_single_event_trigger_fires_once_per_event_with_coerced_parameters() -> None:
    correlator = Correlator(sensors(refresh, unrelated))
    decisions = correlator.process([arrival("data_updated", "e1", rows="7", table="t")])
    [fire] = decisions.fires
    assert fire.sensor.id == "refresh.trigger"
    assert fire.parameters == {"table": "t", "rows": 7}
    assert [e["id"] for e in fire.events] == ["e1"]
    assert fire.events[0]["dependency"] == "data_updated"
    assert decisions.failures == []


def test_a_value_that_does_not_fit_is_a_failure_and_no_fire() -> None:
    decisions = Correlator(sensors(refresh)).process([arrival("data_updated", "e1", rows="x")])
    assert decisions.fires == []
    [failure] = decisions.failures
    assert failure.event_id == "e1" and "'rows' expects int" in failure.reason


def test_events_from_before_the_deployment_are_ignored() -> None:
    old = arrival("data_updated", "e0", at=DEPLOYED - timedelta(seconds=1))
    decisions = Correlator(sensors(refresh)).process([old])
    assert decisions.fires == [] and decisions.ignored_before_deploy == 1


def test_an_event_reaches_only_the_sensors_that_wait_for_its_name() -> None:
    correlator = Correlator(sensors(refresh, join, unrelated))
    assert [s.id for s, _ in correlator.interested("orders")] == ["join.trigger"]
    assert correlator.interested("nobody_waits_for_this") == ()


def test_the_run_name_is_the_same_for_the_same_events_and_a_valid_kubernetes_name() -> None:
    correlator = Correlator(sensors(refresh))
    first = correlator.process([arrival("data_updated", "e1")]).fires[0].run_name
    again = correlator.process([arrival("data_updated", "e1")]).fires[0].run_name
    other = correlator.process([arrival("data_updated", "e2")]).fires[0].run_name
    assert first == again != other
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", first) and len(first) <= 63


@given(
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5, unique=True), st.randoms()
)
def test_the_run_name_does_not_depend_on_the_order_of_events(ids: list[str], rnd: object) -> None:
    shuffled = list(ids)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert run_name_for("p", "d", "f.t", "f", ids) == run_name_for("p", "d", "f.t", "f", shuffled)


def test_the_run_name_differs_across_projects_and_sensors() -> None:
    base = run_name_for("p", "d", "f.trigger", "f", ["e"])
    assert base != run_name_for("q", "d", "f.trigger", "f", ["e"])
    assert base != run_name_for("p", "d", "f.trigger_2", "f", ["e"])


def test_two_events_fire_together_when_both_arrive_within_the_window() -> None:
    correlator = Correlator(sensors(join))
    assert correlator.process([arrival("orders", "o1", rows=3)]).fires == []
    [fire] = correlator.process(
        [arrival("customers", "c1", at=T0 + timedelta(minutes=30), region="us")]
    ).fires
    assert fire.parameters == {"rows": 3, "region": "us"}
    assert [e["id"] for e in fire.events] == ["o1", "c1"]
    assert correlator.state_size() == 2  # the two ids are remembered for the window


def test_events_further_apart_than_the_window_never_fire_together() -> None:
    correlator = Correlator(sensors(join))
    correlator.process([arrival("orders", "o1")])
    late = arrival("customers", "c1", at=T0 + timedelta(hours=2))
    assert correlator.process([late]).fires == []


def test_the_latest_event_of_a_dependency_wins_and_fired_events_are_consumed() -> None:
    correlator = Correlator(sensors(join))
    correlator.process([arrival("orders", "o1", rows=1), arrival("orders", "o2", rows=2)])
    [fire] = correlator.process([arrival("customers", "c1", at=T0 + timedelta(minutes=1))]).fires
    assert fire.parameters["rows"] == 2
    assert correlator.held("join.trigger") == {}
    assert (
        correlator.process([arrival("customers", "c2", at=T0 + timedelta(minutes=2))]).fires == []
    )


def test_a_duplicate_event_id_counts_once() -> None:
    correlator = Correlator(sensors(join))
    correlator.process([arrival("orders", "o1")])
    correlator.process([arrival("customers", "c1")])
    assert correlator.process([arrival("orders", "o1")]).fires == []
    assert correlator.held("join.trigger") == {}


def test_expiry_drops_held_events_and_remembered_ids() -> None:
    correlator = Correlator(sensors(join))
    correlator.process([arrival("orders", "o1")])
    assert correlator.state_size() == 2
    correlator.expire(T0 + timedelta(hours=1, seconds=1))
    assert correlator.state_size() == 0

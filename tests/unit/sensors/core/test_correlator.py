"""The correlation core: which events fire which sensors, with what, and what state remains."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.core.router import Router
from sensors.core.types import PUBLISHED, Arrival
from sensors.core.wire import decode_changes, pack
from tests.fixtures.core import DEPLOYED, HOUR, T0, Engine, arrival, sensors
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.envelope import Envelope
from triggers.spec import ScheduleSpec


@trigger(event="data_updated")
def refresh(table: str = "sales", rows: int = 0) -> None: ...


@trigger(events=["orders", "customers"], within="1h")
def join(rows: int = 0, region: str = "eu") -> None: ...


@trigger(events=["a", "b", "c"], conditions="a && (b || c)", within="1h")
def either(x: int = 0, y: int = 0, z: int = 0) -> None: ...


@trigger(events=["orders", "customers"], correlate_by="$.date", within="1d")
def daily(date: str = "") -> None: ...


@trigger(event="other")
def unrelated() -> None: ...


# single-event sensors


def test_a_single_event_trigger_fires_once_per_event_with_coerced_parameters() -> None:
    engine = Engine(refresh, unrelated)
    decisions = engine.feed([arrival("data_updated", "e1", rows="7", table="t")])
    [fire] = decisions.fires
    assert fire.sensor.id == "refresh.trigger"
    assert fire.parameters == {"table": "t", "rows": 7}
    assert [e.id for e in fire.events] == ["e1"]
    assert fire.events[0].dependency == "data_updated"


def test_a_value_that_does_not_fit_is_a_failure_and_no_fire() -> None:
    decisions = Engine(refresh).feed([arrival("data_updated", "e1", rows="x")])
    assert decisions.fires == []
    [failure] = decisions.failures
    assert failure.event_id == "e1" and "'rows' expects int" in failure.reason


def test_events_from_before_the_deployment_are_ignored() -> None:
    routed = Router(sensors(refresh)).route(
        [arrival("data_updated", "e0", at=DEPLOYED - timedelta(seconds=1))]
    )
    assert routed.fires == [] and routed.ignored_before_deploy == 1


def test_an_event_reaches_only_the_sensors_that_wait_for_its_name() -> None:
    router = Router(sensors(refresh, join, unrelated))
    assert [s.id for s, _ in router.interested("orders")] == ["join.trigger"]
    assert router.interested("nobody_waits_for_this") == ()


def test_the_run_name_is_the_same_for_the_same_events_and_a_valid_kubernetes_name() -> None:
    engine = Engine(refresh)
    first = engine.feed([arrival("data_updated", "e1")]).fires[0].run_name
    again = engine.feed([arrival("data_updated", "e1")]).fires[0].run_name
    other = engine.feed([arrival("data_updated", "e2")]).fires[0].run_name
    assert first == again != other
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", first) and len(first) <= 63


@given(
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5, unique=True), st.randoms()
)
def test_the_run_name_does_not_depend_on_the_order_of_events(ids: list[str], rnd: Any) -> None:
    [sensor] = sensors(join)
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert sensor.run_name(ids) == sensor.run_name(shuffled)


def test_the_run_name_differs_across_projects_and_sensors() -> None:
    [sensor] = sensors(join)
    base = sensor.run_name(["e"])
    elsewhere = dataclasses.replace(sensor, project="q")
    other_trigger = dataclasses.replace(
        sensor, trigger=sensor.trigger.model_copy(update={"name": "trigger_2"})
    )
    assert base != elsewhere.run_name(["e"])
    assert base != other_trigger.run_name(["e"])


# multi-event sensors


def test_two_events_fire_together_when_both_arrive_within_the_window() -> None:
    engine = Engine(join)
    assert engine.feed([arrival("orders", "o1", rows=3)]).fires == []
    [fire] = engine.feed(
        [arrival("customers", "c1", at=T0 + 30 * timedelta(minutes=1), region="us")]
    ).fires
    assert fire.parameters == {"rows": 3, "region": "us"}
    assert [e.id for e in fire.events] == ["o1", "c1"]


def test_events_further_apart_than_the_window_never_fire_together() -> None:
    engine = Engine(join)
    engine.feed([arrival("orders", "o1")])
    assert engine.feed([arrival("customers", "c1", at=T0 + 2 * HOUR)]).fires == []


def test_the_latest_event_of_a_dependency_wins_and_fired_events_are_consumed() -> None:
    engine = Engine(join)
    engine.feed(
        [
            arrival("orders", "o2", rows=2, at=T0 + timedelta(seconds=1)),
            arrival("orders", "o1", rows=1),
        ]
    )
    [fire] = engine.feed([arrival("customers", "c1", at=T0 + timedelta(minutes=1))]).fires
    assert fire.parameters["rows"] == 2
    assert engine.correlator.held("join.trigger") == {}
    assert engine.feed([arrival("customers", "c2", at=T0 + timedelta(minutes=2))]).fires == []


def test_a_duplicate_event_id_counts_once() -> None:
    engine = Engine(join)
    engine.feed([arrival("orders", "o1")])
    engine.feed([arrival("customers", "c1")])
    assert engine.feed([arrival("orders", "o1")]).fires == []
    assert engine.correlator.held("join.trigger") == {}


def test_two_sources_that_reuse_an_id_publish_two_events() -> None:
    # Given two services that each name their daily event after the day, in one sensor
    engine = Engine(join)
    orders = Arrival(Envelope("orders", "2026-11-23", "svc://orders", T0, {}), T0)
    customers = Arrival(Envelope("customers", "2026-11-23", "svc://crm", T0, {}), T0)
    # When both arrive, and one of them is delivered again
    fired = engine.feed([orders]).fires + engine.feed([customers, customers]).fires
    # Then they are two events (CloudEvents: source and id), and fire once
    [fire] = fired
    assert sorted(e.source for e in fire.events) == ["svc://crm", "svc://orders"]
    assert fire.consumes == ("svc://orders\x1f2026-11-23", "svc://crm\x1f2026-11-23")


def test_the_run_names_of_events_that_tripwire_published_do_not_change() -> None:
    # An event of tripwire's own publishers is its id alone, as before sources counted
    [sensor] = sensors(refresh)
    published = Arrival(Envelope("data_updated", "e1", PUBLISHED, T0, {}), T0)
    elsewhere = Arrival(Envelope("data_updated", "e1", "svc://etl", T0, {}), T0)
    [mine] = Router([sensor]).route([published]).fires
    [theirs] = Router([sensor]).route([elsewhere]).fires
    assert mine.run_name == sensor.run_name(["e1"]) != theirs.run_name


def test_an_or_condition_fires_on_either_branch_and_records_who_contributed() -> None:
    engine = Engine(either)
    assert engine.feed([arrival("a", "a1", x=1)]).fires == []
    [fire] = engine.feed([arrival("c", "c1", z=3)]).fires
    assert [e.dependency for e in fire.events] == ["a", "c"]
    assert fire.parameters == {"x": 1, "y": 0, "z": 3}  # b did not contribute: default


def test_events_with_different_correlation_keys_never_combine() -> None:
    engine = Engine(daily)
    assert engine.feed([arrival("orders", "o1", date="2026-11-22")]).fires == []
    assert engine.feed([arrival("customers", "c1", date="2026-11-23")]).fires == []
    [fire] = engine.feed([arrival("customers", "c0", date="2026-11-22")]).fires
    assert {e.id for e in fire.events} == {"o1", "c0"}
    assert list(engine.correlator.held("daily.trigger")) == ['"2026-11-23"']


def test_an_event_without_its_correlation_key_is_rejected_with_the_reason() -> None:
    routed = Router(sensors(daily)).route([arrival("orders", "o1")])
    [rejection] = routed.rejections
    assert rejection.reason == "correlation key $.date is missing" and routed.offers == []


def test_expiry_drops_held_events_and_remembered_ids() -> None:
    engine = Engine(join)
    engine.feed([arrival("orders", "o1")])
    assert engine.correlator.state_size() == 2
    changed = engine.correlator.expire(T0 + HOUR + timedelta(seconds=1))
    assert changed == {("join.trigger", "")}
    assert engine.correlator.state_size() == 0


def test_state_survives_a_round_trip_through_the_changelog_record() -> None:
    engine = Engine(join)
    routed = engine.router.route([arrival("orders", "o1", rows=4)])
    _, changes = engine.correlator.offer(routed.offers, T0)
    [record] = pack(changes, 1 << 20)
    restored = Engine(join)
    for change in decode_changes(record):
        restored.correlator.apply(change, T0)
    [fire] = restored.feed([arrival("customers", "c1")]).fires
    assert fire.parameters["rows"] == 4
    assert restored.feed([arrival("orders", "o1")]).fires == []  # the id memory came along


def test_a_replay_keeps_only_what_is_still_inside_the_window() -> None:
    # Given a changelog entry for an event held at T0, replayed more than a window later
    engine = Engine(join)
    _, changes = engine.correlator.offer(engine.router.route([arrival("orders", "o1")]).offers, T0)
    restored = Engine(join)
    for change in changes:
        restored.correlator.apply(change, T0 + HOUR + timedelta(seconds=1))
    # Then nothing is loaded: a long changelog costs no more memory than the live state
    assert restored.correlator.state == {}


# properties

DEPS = ["orders", "customers"]
events_strategy = st.lists(
    st.tuples(st.sampled_from(DEPS), st.integers(0, 3 * 3600), st.sampled_from(["k1", "k2"])),
    min_size=1,
    max_size=30,
)


@trigger(events=DEPS, within="1h", correlate_by="$.key")
def keyed(rows: int = 0) -> None: ...


def _arrivals(spec: list[tuple[str, int, str]]) -> list[Arrival]:
    return [
        arrival(name, f"{name}-{n}", at=T0 + timedelta(seconds=offset), key=key)
        for n, (name, offset, key) in enumerate(spec)
    ]


@settings(max_examples=200)
@given(events_strategy, st.randoms())
def test_a_sensor_never_fires_outside_its_window_nor_reuses_an_event(
    spec: list[tuple[str, int, str]], rnd: Any
) -> None:
    arrivals = _arrivals(spec)
    rnd.shuffle(arrivals)
    engine = Engine(keyed)
    fires = []
    clock = T0
    for a in arrivals:
        clock = max(clock, a.event_time)
        fires += engine.feed([a], now=clock).fires
    used: list[str] = []
    for fire in fires:
        times = [e.time for e in fire.events]
        assert max(times) - min(times) <= HOUR
        assert len({e.payload["key"] for e in fire.events}) == 1
        used += [e.id for e in fire.events]
    assert len(used) == len(set(used))


@settings(max_examples=100)
@given(st.permutations(["orders", "customers", "extra-orders"]), st.integers(0, 3599))
def test_the_same_events_inside_the_window_fire_the_same_way_in_any_order(
    order: list[str], gap: int
) -> None:
    # Given one event per dependency plus an older duplicate dependency event
    by_name = {
        "orders": arrival("orders", "o-new", at=T0 + timedelta(seconds=10), rows=2),
        "extra-orders": arrival("orders", "o-old", at=T0, rows=1),
        "customers": arrival("customers", "c", at=T0 + timedelta(seconds=gap)),
    }
    engine = Engine(join)
    fires = []
    for name in order:
        fires += engine.feed([by_name[name]], now=T0 + HOUR).fires
    # Then exactly one fire when customers come last; latest orders event wins regardless
    if order[-1] == "customers":
        [fire] = fires
        assert {e.id for e in fire.events} == {"o-new", "c"}
        assert fire.parameters["rows"] == 2
    else:
        assert len(fires) == 1


@settings(max_examples=100)
@given(events_strategy)
def test_state_stays_bounded_and_expires_completely(spec: list[tuple[str, int, str]]) -> None:
    engine = Engine(keyed)
    clock = T0
    for a in _arrivals(spec):
        clock = max(clock, a.event_time)
        engine.feed([a], now=clock)
        keys = {k for (_, k) in engine.correlator.state}
        assert engine.correlator.held_count() <= len(DEPS) * len(keys)
    engine.correlator.expire(clock + HOUR + timedelta(seconds=1))
    assert engine.correlator.state_size() == 0 and engine.correlator.state == {}


@settings(max_examples=150)
@given(events_strategy, st.integers(0, 30), st.randoms())
def test_a_correlator_rebuilt_from_its_changelog_decides_the_rest_the_same_way(
    spec: list[tuple[str, int, str]], cut: int, rnd: Any
) -> None:
    # Given a correlator that has taken some events and logged what it changed
    arrivals = _arrivals(spec)
    rnd.shuffle(arrivals)
    original, changelog, clock = Engine(keyed), [], T0

    def feed(engine: Engine, a: Arrival) -> list[str]:
        decided, changes = engine.correlator.offer(engine.router.route([a]).offers, clock)
        if engine is original:
            changelog.extend(changes)
        return [f.run_name for f in decided.fires]

    for a in arrivals[:cut]:
        clock = max(clock, a.event_time)
        feed(original, a)
    # When another one replays the log through the wire format, as a worker taking over
    restored = Engine(keyed)
    for record in pack(changelog, 200):
        for change in decode_changes(record):
            restored.correlator.apply(change, clock)
    restored.correlator.expire(clock)
    original.correlator.expire(clock)
    # Then both decide every later event alike
    for a in arrivals[cut:]:
        clock = max(clock, a.event_time)
        assert feed(restored, a) == feed(original, a)


def test_reset_at_drops_what_was_held_before_the_latest_tick_by_event_time() -> None:
    # Given join, reset at midnight UTC (Metaflow's options={"reset_at": ...}), with a window
    # long enough to hold events for days
    spec = flow_spec(join)
    reset = ScheduleSpec(cron="0 0 * * *", tz="UTC")
    trigger = spec.triggers[0].model_copy(update={"reset_at": reset, "within": 3 * 24 * HOUR})
    engine = Engine(spec.model_copy(update={"triggers": (trigger,)}))
    midnight = T0.replace(hour=0)
    # An orders event before midnight and a customers event after it do not fire together
    engine.feed([arrival("orders", "o1", at=midnight - HOUR, rows=1)])
    assert engine.feed([arrival("customers", "c1", at=midnight + HOUR)]).fires == []
    # An orders event after midnight does, with the customers event it waited for
    [fire] = engine.feed([arrival("orders", "o2", at=midnight + 2 * HOUR, rows=2)]).fires
    assert [e.id for e in fire.events] == ["c1", "o2"] and fire.parameters["rows"] == 2
    # Without reset_at, the same two events across midnight do fire together
    plain = Engine(
        spec.model_copy(update={"triggers": (trigger.model_copy(update={"reset_at": None}),)})
    )
    plain.feed([arrival("orders", "o1", at=midnight - HOUR)])
    assert len(plain.feed([arrival("customers", "c1", at=midnight + HOUR)]).fires) == 1

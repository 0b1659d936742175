"""What the sensor stage counts for the sensor page and the graph: events by source and
name, offers by sensor and dependency (derived from the names, and the same as counting
them one by one), per minute, and the marks of each batch."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.core.router import Routed, Router
from sensors.core.types import Arrival
from sensors.runs.activity import FILTERED, OFFERED, ActivityMark
from sensors.stages.activity import MARKS_PER_REPORT, Activity
from tests.fixtures.core import T0, sensors
from triggers import trigger
from triggers.envelope import Envelope


@trigger(event="data_updated")
def refresh(rows: int = 0) -> None: ...


@trigger(events=[{"name": "payment", "filters": ["$.amount >= 100"]}, "approved"])
def big_payment(amount: float = 0) -> None: ...


@trigger(events=["orders.*", "customers"], within="1h", correlate_by="$.region")
def orders(region: str = "") -> None: ...


@trigger(event="orders.eu")
def eu_orders() -> None: ...


FLOWS = (refresh, big_payment, orders, eu_orders)
ROUTER = Router(sensors(*FLOWS))
NAMES = ["data_updated", "payment", "approved", "orders.eu", "orders.us", "customers", "other"]


def event(name: str, id: str, source: str = "s", at: datetime = T0, **payload: object) -> Arrival:
    return Arrival(Envelope(name=name, id=id, source=source, time=at, payload=payload), at)


def counted(*batches: list[Arrival], router: Router = ROUTER) -> Activity:
    activity = Activity()
    for arrivals in batches:
        activity.add(arrivals, router.route(arrivals), router, T0)
    activity.settle()
    return activity


def offered_one_by_one(routed: Routed) -> Counter[tuple[str, str]]:
    """The offers of a batch as the router made them: to stateful sensors, and the fires
    and failures of stateless ones."""
    found = Counter((o.sensor_id, o.dep) for o in routed.offers)
    found.update((f.sensor.id, e.dependency) for f in routed.fires for e in f.events)
    found.update((f.sensor.id, f.sensor.dependencies[0].dep) for f in routed.failures)
    return found


def test_events_are_counted_by_source_and_name_and_offers_by_sensor_and_dependency() -> None:
    # Given a batch: a stateless sensor's event, a payment filtered out and one offered,
    # two events of one wildcard dependency (one also an exact one's), one without the
    # correlation key, and an event no sensor waits for
    arrivals = [
        event("data_updated", "1", source="warehouse"),
        event("payment", "2", amount=5),
        event("payment", "3", amount=500),
        event("orders.eu", "4", region="eu"),
        event("orders.us", "5", region="us"),
        event("orders.us", "6"),
        event("nobody_waits", "7"),
    ]
    # When it is counted
    activity = counted(arrivals)
    # Then every event counts once, under its source and name
    assert activity.events == {
        T0: {
            ("warehouse", "data_updated"): 1,
            ("s", "payment"): 2,
            ("s", "orders.eu"): 1,
            ("s", "orders.us"): 2,
            ("s", "nobody_waits"): 1,
        }
    }
    # And each dependency counts the events offered to it: the fired ones too, the
    # filtered ones not
    assert activity.offers == {
        T0: {
            ("refresh.trigger", "data_updated"): 1,
            ("big_payment.trigger", "payment"): 1,
            ("orders.trigger", "orders.*"): 2,
            ("eu_orders.trigger", "orders.eu"): 1,
        }
    }


def test_a_stateless_sensors_event_that_fails_to_become_a_run_still_counts_as_offered() -> None:
    activity = counted([event("data_updated", "1", rows="lots")])
    assert activity.offers == {T0: {("refresh.trigger", "data_updated"): 1}}
    assert [m.event_id for m in activity.marks()] == ["1"]


batches = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(NAMES),
            st.sampled_from(["s", "warehouse"]),
            st.sampled_from([{}, {"amount": 5}, {"amount": 500}, {"region": "eu"}, {"rows": "x"}]),
            st.booleans(),  # arrived before the sensors were deployed
        ),
        max_size=8,
    ),
    min_size=1,
    max_size=4,
)


@given(batches)
@settings(max_examples=200, deadline=None)
def test_offers_derived_from_names_are_those_the_router_made(
    drawn: list[list[tuple[str, str, dict[str, object], bool]]],
) -> None:
    activity = Activity()
    expected: Counter[tuple[str, str]] = Counter()
    for b, batch in enumerate(drawn):
        arrivals = [
            event(name, f"{b}.{i}", source, at=T0 - timedelta(days=2) if early else T0, **payload)
            for i, (name, source, payload, early) in enumerate(batch)
        ]
        routed = ROUTER.route(arrivals)
        expected += offered_one_by_one(routed)
        activity.add(arrivals, routed, ROUTER, T0)
    activity.settle()
    assert activity.offers.get(T0, Counter()) == +expected


def test_offers_are_derived_with_the_router_their_events_were_routed_by() -> None:
    # Given an approval routed while big_payment was deployed, then one after it was removed
    without = Router(sensors(refresh))
    activity = Activity()
    for router in (ROUTER, without):
        arrivals = [event("approved", "a"), event("data_updated", "d")]
        activity.add(arrivals, router.route(arrivals), router, T0)
    activity.settle()
    # Then only the first counts as offered to it
    assert activity.offers[T0] == {
        ("big_payment.trigger", "approved"): 1,
        ("refresh.trigger", "data_updated"): 2,
    }
    # And settling again counts nothing twice
    activity.settle()
    assert activity.offers[T0][("refresh.trigger", "data_updated")] == 2


def test_batches_count_into_the_minute_they_were_routed_in() -> None:
    activity = Activity()
    for at in (T0, T0 + timedelta(seconds=59), T0 + timedelta(seconds=61)):
        arrivals = [event("approved", "a")]
        activity.add(arrivals, ROUTER.route(arrivals), ROUTER, at)
    activity.settle()
    key = ("big_payment.trigger", "approved")
    assert activity.offers == {T0: {key: 2}, T0 + timedelta(minutes=1): {key: 1}}
    # And counts older than a minute the store keeps no more are forgotten
    activity.forget(T0 + timedelta(minutes=1, seconds=30))
    assert list(activity.offers) == list(activity.events) == [T0 + timedelta(minutes=1)]


def test_a_report_takes_the_minutes_that_ended_and_the_rest_waits_for_the_next() -> None:
    # Given approvals counted in two minutes, and settled
    activity = Activity()
    later = T0 + timedelta(minutes=1)
    for at in (T0, later):
        arrivals = [event("approved", "a")]
        activity.add(arrivals, ROUTER.route(arrivals), ROUTER, at)
    activity.settle()
    # When a report takes the minute that ended, and writes it
    events, offers = activity.counts(before=later)
    assert events == {(T0, "s", "approved"): 1}
    assert offers == {(T0, "big_payment.trigger", "approved"): 1}
    activity.written(before=later)
    assert activity.marks() == []
    # Then the later minute goes on counting, and is settled once, with its new events
    arrivals = [event("approved", "b")]
    activity.add(arrivals, ROUTER.route(arrivals), ROUTER, later)
    activity.settle()
    events, offers = activity.counts()
    assert events == {(later, "s", "approved"): 2}
    assert offers == {(later, "big_payment.trigger", "approved"): 2}


def test_a_batch_marks_the_last_event_offered_to_and_filtered_by_each_dependency() -> None:
    arrivals = [
        event("payment", "small-1", amount=1),
        event("payment", "big-1", amount=100),
        event("payment", "small-2", amount=2),
        event("payment", "big-2", amount=200),
        event("approved", "ok"),
        event("data_updated", "fired"),
    ]
    marks = counted(arrivals).marks()
    sensor = "big_payment.trigger"
    assert marks == [
        ActivityMark(sensor, "payment", OFFERED, "big-2", None, T0),
        ActivityMark(sensor, "approved", OFFERED, "ok", None, T0),
        ActivityMark("refresh.trigger", "data_updated", OFFERED, "fired", None, T0),
        ActivityMark(sensor, "payment", FILTERED, "small-2", "$.amount = 2 is not >= 100", T0),
    ]


def test_only_the_newest_marks_are_kept_between_reports_oldest_first() -> None:
    # Given more batches than a report writes marks of, one mark each
    activity = Activity()
    for n in range(MARKS_PER_REPORT + 10):
        arrivals = [event("approved", f"e{n}")]
        activity.add(arrivals, ROUTER.route(arrivals), ROUTER, T0 + timedelta(milliseconds=n))
    # Then a report gets the newest, oldest first
    marks = activity.marks()
    assert len(marks) == MARKS_PER_REPORT
    assert [m.event_id for m in marks[:2]] == ["e10", "e11"]
    assert marks[-1].event_id == f"e{MARKS_PER_REPORT + 9}"
    # And every event was counted all the same
    activity.settle()
    assert sum(activity.offers[T0].values()) == MARKS_PER_REPORT + 10

"""Thresholds, sequences, absences, debounce and wildcards in the pure core."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.core.correlator import MAX_COALESCED
from sensors.core.router import Router
from sensors.core.sensor import build_sensors
from sensors.core.trigger_kinds import MAX_ABSENT_WINDOWS
from sensors.core.types import Arrival, Decisions, Fire
from sensors.core.wire import decode_changes, pack
from tests.fixtures.core import DEPLOYED, HOUR, T0, Engine, arrival
from triggers import trigger
from triggers.declarations import flow_spec

MINUTE = timedelta(minutes=1)


class Clocked(Engine):
    """The test engine, plus the clock: every key is this worker's."""

    changelog: list[Any]

    def __init__(self, *flows: Any) -> None:
        super().__init__(*flows)
        self.changelog = []

    def feed(self, arrivals: list[Arrival], now: datetime | None = None) -> Decisions:
        routed = self.router.route(arrivals)
        now = now or max(a.arrived_at for a in arrivals)
        decided, changes = self.correlator.offer(routed.offers, now)
        self.changelog += changes
        return Decisions(routed.fires + decided.fires, routed.failures + decided.failures)

    def tick(self, now: datetime, grace: timedelta = timedelta(0)) -> Decisions:
        """The watermark passes ``now - grace``."""
        decided, changes = self.correlator.advance(now - grace)
        self.changelog += changes
        return decided

    def restored(self, *flows: Any, now: datetime) -> Clocked:
        """Another engine that replays this one's changelog, as a worker taking over."""
        other = Clocked(*flows)
        for record in pack(self.changelog, 300):
            for change in decode_changes(record):
                other.correlator.apply(change, now)
        other.correlator.expire(now)
        return other


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# thresholds


@trigger(event="order_failed", threshold=5, within="10m", correlate_by="$.customer")
def failures(customer: str = "", order: int = 0) -> None: ...


def failed(n: int, *, customer: str = "c1", seconds: float | None = None) -> Arrival:
    return arrival(
        "order_failed",
        f"f{n}",
        at=at(n if seconds is None else seconds),
        customer=customer,
        order=n,
    )


def test_a_threshold_fires_at_the_nth_event_with_the_last_events_parameters() -> None:
    engine = Clocked(failures)
    fires = [f for n in range(1, 11) for f in engine.feed([failed(n)]).fires]
    # Then the 5th and the 10th event fire, each with the five it counted
    first, second = fires
    assert first.parameters == {"customer": "c1", "order": 5}
    assert first.info == {
        "kind": "threshold",
        "threshold": 5,
        "count": 5,
        "event_ids": ["f1", "f2", "f3", "f4", "f5"],
    }
    assert [e.id for e in first.events] == ["f5"]
    assert second.info is not None and second.info["event_ids"] == ["f6", "f7", "f8", "f9", "f10"]
    assert first.run_name != second.run_name


def test_a_threshold_counts_an_event_id_once_and_per_correlation_key() -> None:
    engine = Clocked(failures)
    arrivals = [failed(1), failed(1), failed(2), failed(3), failed(4)]  # f1 twice
    arrivals += [failed(n, customer="c2") for n in range(10, 14)]
    assert engine.feed(arrivals).fires == []
    [fire] = engine.feed([failed(5)]).fires
    assert fire.parameters["customer"] == "c1"


def test_a_threshold_never_counts_events_further_apart_than_the_window() -> None:
    engine = Clocked(failures)
    spread = [failed(n, seconds=n * 200) for n in range(1, 10)]  # 200 s apart: 4 per 10 min
    fires = [f for a in spread for f in engine.feed([a]).fires]
    assert fires == []


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(st.integers(0, 3600), st.sampled_from(["c1", "c2"])),
        max_size=60,
    )
)
def test_a_threshold_never_fires_below_n_and_never_reuses_an_event(
    spec: list[tuple[int, str]],
) -> None:
    # Given events in any order of event time, for two customers
    engine = Clocked(failures)
    fires: list[Fire] = []
    clock = T0
    first: dict[str, tuple[int, str]] = {}
    for n, (seconds, customer) in enumerate(spec):
        first[f"f{n}"] = (seconds, customer)
        clock = max(clock, at(seconds))
        fires += engine.feed([failed(n, customer=customer, seconds=seconds)], now=clock).fires
    used: list[str] = []
    for fire in fires:
        assert fire.info is not None
        ids = fire.info["event_ids"]
        assert len(set(ids)) == 5
        assert max(first[i][0] for i in ids) - min(first[i][0] for i in ids) <= 600
        assert {first[i][1] for i in ids} == {fire.parameters["customer"]}
        used += ids
    # An id counts once per sensor, whatever key it came with
    assert len(used) == len(set(used))


# sequences


@trigger(sequence=["extract_done", "validate_done", "load_done"], within="1h")
def pipeline(run: str = "") -> None: ...


def step(name: str, id: str, seconds: float, run: str = "") -> Arrival:
    return arrival(name, id, at=at(seconds), run=run)


def test_a_sequence_fires_when_its_events_happen_in_order() -> None:
    engine = Clocked(pipeline)
    fires = engine.feed([step("extract_done", "e", 1), step("validate_done", "v", 2)]).fires
    fires += engine.feed([step("load_done", "l", 3, run="r1")]).fires
    [fire] = fires
    assert [e.id for e in fire.events] == ["e", "v", "l"]
    assert fire.parameters == {"run": "r1"}


def test_a_sequence_holds_a_later_step_that_arrived_first_when_it_happened_later() -> None:
    # Given the steps arrive out of order from different topics, but happened in order
    engine = Clocked(pipeline)
    fires = engine.feed([step("load_done", "l", 3)]).fires
    fires += engine.feed([step("validate_done", "v", 2)]).fires
    fires += engine.feed([step("extract_done", "e", 1)]).fires
    # Then it fires: order is event time
    assert len(fires) == 1


def test_a_sequence_never_fires_when_the_events_happened_out_of_order() -> None:
    engine = Clocked(pipeline)
    fires = engine.feed([step("validate_done", "v", 1), step("extract_done", "e", 2)]).fires
    fires += engine.feed([step("load_done", "l", 3)]).fires
    assert fires == []
    # and an extract that happened after the held later steps restarts the sequence
    assert set(engine.correlator.held("pipeline.trigger")[""]) == {"extract_done", "load_done"}


def test_a_new_first_step_restarts_the_sequence_and_the_latest_event_of_a_step_wins() -> None:
    engine = Clocked(pipeline)
    engine.feed([step("extract_done", "e1", 1), step("validate_done", "v1", 2)])
    engine.feed([step("extract_done", "e2", 3)])  # restarts: v1 happened before it
    assert engine.feed([step("load_done", "l1", 4)]).fires == []
    [fire] = engine.feed([step("validate_done", "v2", 3.5)]).fires
    assert [e.id for e in fire.events] == ["e2", "v2", "l1"]


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["extract_done", "validate_done", "load_done"]), st.integers(0, 5000)
        ),
        max_size=40,
    ),
    st.randoms(),
)
def test_a_sequence_never_fires_out_of_order_nor_outside_its_window(
    spec: list[tuple[str, int]], rnd: Any
) -> None:
    arrivals = [step(name, f"{name}-{n}", seconds) for n, (name, seconds) in enumerate(spec)]
    rnd.shuffle(arrivals)
    engine = Clocked(pipeline)
    fires: list[Fire] = []
    clock = T0
    for a in arrivals:
        clock = max(clock, a.event_time)
        fires += engine.feed([a], now=clock).fires
    used: list[str] = []
    order = {"extract_done": 0, "validate_done": 1, "load_done": 2}
    for fire in fires:
        by_step = sorted(fire.events, key=lambda e: order[e.name])
        times = [e.time for e in by_step if e.time is not None]
        assert times == sorted(times) and len(times) == 3
        assert times[-1] - times[0] <= HOUR
        used += [e.id for e in fire.events]
    assert len(used) == len(set(used))


# absences


@trigger(absent="data_updated", within="1h")
def hourly_check(table: str = "sales") -> None: ...


@trigger(absent="load_finished", after="load_started", within="30m", correlate_by="$.day")
def load_sla(day: str = "") -> None: ...


def test_an_absence_fires_once_for_each_window_without_the_event() -> None:
    # Given windows of an hour from the deployment: one with the event, one without, one with
    engine = Clocked(hourly_check)
    engine.tick(DEPLOYED)
    engine.feed([arrival("data_updated", "d1", at=DEPLOYED + 10 * MINUTE)])
    engine.feed([arrival("data_updated", "d2", at=DEPLOYED + 2 * HOUR + 10 * MINUTE)])
    # When the clock passes all three, twice
    fires = engine.tick(DEPLOYED + 3 * HOUR).fires + engine.tick(DEPLOYED + 3 * HOUR).fires
    # Then the middle one fired, once, named by its window
    [fire] = fires
    assert fire.info == {
        "kind": "absence",
        "window_start": (DEPLOYED + HOUR).isoformat(),
        "window_end": (DEPLOYED + 2 * HOUR).isoformat(),
    }
    assert fire.parameters == {"table": "sales"} and fire.events == ()


def test_an_absence_waits_for_the_watermark_not_the_clock() -> None:
    engine = Clocked(hourly_check)
    engine.tick(DEPLOYED)
    # The window has closed by the clock, but not by the watermark (a 10 s grace)
    assert (
        engine.tick(DEPLOYED + HOUR + timedelta(seconds=5), grace=timedelta(seconds=10)).fires == []
    )
    # and a late event from inside the window still counts
    engine.feed([arrival("data_updated", "late", at=DEPLOYED + HOUR - timedelta(seconds=1))])
    assert (
        engine.tick(DEPLOYED + HOUR + timedelta(seconds=20), grace=timedelta(seconds=10)).fires
        == []
    )


def test_calendar_day_windows_follow_daylight_saving_in_their_zone() -> None:
    @trigger(absent="data_updated", within="24h", tz="Europe/Berlin")
    def daily_load() -> None: ...

    engine = Clocked(daily_load)
    engine.correlator.sensors["daily_load.trigger"]  # deployed a day before T0 (Nov 22)
    engine.tick(DEPLOYED)
    fires = engine.tick(datetime(2026, 11, 25, tzinfo=UTC)).fires
    # Nov 23 and Nov 24, Berlin midnight to midnight (23:00 UTC)
    assert [f.info and f.info["window_start"] for f in fires] == [
        "2026-11-22T23:00:00+00:00",
        "2026-11-23T23:00:00+00:00",
    ]


def test_an_absence_after_a_start_fires_only_when_the_finish_does_not_follow() -> None:
    engine = Clocked(load_sla)
    engine.feed([arrival("load_started", "s1", at=at(0), day="mon")])
    engine.feed([arrival("load_finished", "f1", at=at(600), day="mon")])  # in time
    engine.feed([arrival("load_started", "s2", at=at(0), day="tue")])  # never finishes
    # A finish that arrived before its start (another topic) still counts
    engine.feed([arrival("load_finished", "f3", at=at(60), day="wed")])
    engine.feed([arrival("load_started", "s3", at=at(0), day="wed")])
    assert engine.tick(at(1799)).fires == []
    [fire] = engine.tick(at(1800)).fires
    assert fire.parameters == {"day": "tue"}
    assert fire.info is not None and fire.info["after_event_id"] == "s2"
    assert engine.tick(at(4000)).fires == []


def test_an_outage_longer_than_the_catch_up_fires_the_latest_windows_and_reports_the_rest() -> None:
    @trigger(absent="data_updated", within="10s")
    def frequent() -> None: ...

    engine = Clocked(frequent)
    engine.tick(DEPLOYED)
    decided = engine.tick(DEPLOYED + timedelta(seconds=10 * (MAX_ABSENT_WINDOWS + 50)))
    assert len(decided.fires) == MAX_ABSENT_WINDOWS
    [failure] = decided.failures
    assert "skipped about 50 window(s)" in failure.reason


@settings(max_examples=100)
@given(
    st.lists(st.integers(0, 6 * 3600), max_size=12),
    st.lists(st.integers(0, 7 * 3600), min_size=1, max_size=10),
    st.integers(0, 12),
)
def test_an_absence_fires_exactly_once_per_empty_window_across_restarts(
    events: list[int], ticks: list[int], crash_after: int
) -> None:
    # Given events over six hours, and the clock ticking at random times
    arrivals = [
        arrival("data_updated", f"d{n}", at=DEPLOYED + timedelta(seconds=s))
        for n, s in enumerate(sorted(events))
    ]
    engine = Clocked(hourly_check)
    engine.tick(DEPLOYED)
    fired: list[str] = []
    now = last_tick = DEPLOYED
    steps: list[tuple[int, Arrival | None]] = [(s, None) for s in ticks]
    steps += [(int((a.event_time - DEPLOYED).total_seconds()), a) for a in arrivals]
    for n, (seconds, event) in enumerate(sorted(steps, key=lambda s: (s[0], s[1] is None))):
        now = max(now, DEPLOYED + timedelta(seconds=seconds))
        if n == crash_after:  # a worker takes over from the changelog
            engine = engine.restored(hourly_check, now=now)
        if event is not None:
            engine.feed([event], now=now)
        else:
            fired += [f.run_name for f in engine.tick(now).fires]
            last_tick = now
    # Then each window that closed before the last tick, and had no event, fired once
    closed = int((last_tick - DEPLOYED) / HOUR)
    busy = {int((a.event_time - DEPLOYED) / HOUR) for a in arrivals}
    empty = [w for w in range(closed) if w not in busy]
    assert len(set(fired)) == len(empty)
    # (a window decided again after a restart fires under the same run name)


# debounce


@trigger(event="file_landed", debounce="30s", correlate_by="$.bucket")
def ingest(path: str = "", bucket: str = "") -> None: ...


def landed(n: int, seconds: float, bucket: str = "b1") -> Arrival:
    return arrival("file_landed", f"l{n}", at=at(seconds), path=f"p{n}", bucket=bucket)


def test_debounce_coalesces_a_burst_into_one_run_after_a_quiet_period() -> None:
    engine = Clocked(ingest)
    fires = [f for n in range(3) for f in engine.feed([landed(n, n * 10)]).fires]
    fires += engine.feed([landed(9, 5, bucket="b2")]).fires
    assert fires == []
    [b2] = engine.tick(at(35)).fires  # 30 s after its only event
    assert engine.tick(at(49)).fires == []  # 30 s after the last of b1 is 50
    [b1] = engine.tick(at(50)).fires
    assert b1.parameters == {"path": "p2", "bucket": "b1"}
    assert b1.info == {"debounce": {"fires": 3, "coalesced_event_ids": ["l0", "l1", "l2"]}}
    assert b2.info == {"debounce": {"fires": 1, "coalesced_event_ids": ["l9"]}}
    assert engine.tick(at(500)).fires == []


def test_a_debounce_that_never_goes_quiet_still_launches() -> None:
    engine = Clocked(ingest)
    fires = [f for n in range(MAX_COALESCED) for f in engine.feed([landed(n, n)]).fires]
    [fire] = fires
    assert fire.info is not None
    assert len(fire.info["debounce"]["coalesced_event_ids"]) == MAX_COALESCED


def test_a_pending_debounce_survives_a_takeover() -> None:
    engine = Clocked(ingest)
    engine.feed([landed(1, 0), landed(2, 5)])
    other = engine.restored(ingest, now=at(10))
    [fire] = other.tick(at(40)).fires
    assert fire.info == {"debounce": {"fires": 2, "coalesced_event_ids": ["l1", "l2"]}}


# wildcards


@trigger(event="orders.*")
def any_order(id: str = "") -> None: ...


@trigger(events=["orders.*", "payments.settled"], within="1h")
def paid_order(id: str = "") -> None: ...


def test_a_wildcard_matches_every_event_name_with_its_prefix() -> None:
    engine = Clocked(any_order, paid_order)
    names = ["orders.created", "orders.eu.shipped", "orders", "ordersx", "payments.settled"]
    fires = [f for n, name in enumerate(names) for f in engine.feed([arrival(name, f"e{n}")]).fires]
    assert [(f.sensor.id, [e.name for e in f.events]) for f in fires] == [
        ("any_order.trigger", ["orders.created"]),
        ("any_order.trigger", ["orders.eu.shipped"]),
        ("paid_order.trigger", ["orders.eu.shipped", "payments.settled"]),
    ]


@settings(max_examples=150)
@given(st.lists(st.integers(0, 300), max_size=40), st.integers(0, 3))
def test_debounce_launches_once_per_burst_and_every_event_in_exactly_one_run(
    times: list[int], takeover_at: int
) -> None:
    # Given events of one key at random times, the clock ticking every second
    arrivals = [landed(n, seconds) for n, seconds in enumerate(sorted(times))]
    engine, fires, pending = Clocked(ingest), [], list(arrivals)
    for second in range(0, 400):
        while pending and pending[0].arrived_at <= at(second):
            fires += engine.feed([pending.pop(0)], now=at(second)).fires
        if second == takeover_at * 100:
            engine = engine.restored(ingest, now=at(second))
        fires += engine.tick(at(second)).fires
    # Then one run per burst (events less than 30 s apart), holding all of its events
    bursts = sum(
        1
        for a, b in zip([None, *sorted(times)], sorted(times), strict=False)
        if a is None or b - a > 30
    )
    assert len(fires) == bursts
    assert all(f.info is not None for f in fires)
    coalesced = [i for f in fires if f.info for i in f.info["debounce"]["coalesced_event_ids"]]
    assert sorted(coalesced) == sorted(a.envelope.id for a in arrivals)


@settings(max_examples=150)
@given(
    st.lists(st.text("ab.", min_size=1, max_size=4), min_size=1, max_size=8, unique=True),
    st.lists(st.text("ab.", min_size=1, max_size=6), max_size=20),
)
def test_wildcards_route_exactly_the_names_with_their_prefix(
    prefixes: list[str], names: list[str]
) -> None:
    flows = []
    for n, prefix in enumerate(prefixes):

        def flow() -> None: ...

        flow.__name__ = flow.__qualname__ = f"w{n}"
        flows.append(trigger(event=f"a{prefix}*")(flow))
    router = Router(
        build_sensors([flow_spec(f) for f in flows], project="p", domain="d", deployed_at=DEPLOYED)
    )
    for name in names:
        routed = {s.flow.name for s, _ in router.interested(f"a{name}")}
        assert routed == {f"w{n}" for n, p in enumerate(prefixes) if name.startswith(p)}

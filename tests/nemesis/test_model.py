"""The nemesis's own parts: the model says what the trigger kinds' rules say, the workload
gives every key one way to fire, and the checker reports each kind of difference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sensors.runs.models import PhaseChange, RunRecord
from sensors.runs.phases import WorkflowPhase
from tests.nemesis.checker import Observed, check
from tests.nemesis.model import Event, Expected, Identity, expected_runs
from tests.nemesis.workload import STALE, Workload

T0 = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)


def _event(name: str, id: str, at: float, *, time: float | None = None, **fields: Any) -> Event:
    """Event ``id`` arriving ``at`` seconds after T0, with event time ``time`` (default
    ``at``); its offset follows its arrival."""
    return Event(
        name,
        id,
        T0 + timedelta(seconds=at if time is None else time),
        T0 + timedelta(seconds=at),
        {"k": fields.pop("k", "key"), **fields},
        0,
        int(at * 1000),
    )


def _runs(*events: Event) -> dict[Identity, dict[str, Any]]:
    return {e.identity: e.parameters for e in expected_runs(events, T0, T0)}


def test_a_pair_fires_once_with_both_events_and_never_with_a_stale_half() -> None:
    assert _runs(_event("nm_a", "a1", 1, a=5), _event("nm_b", "b1", 3, b=6)) == {
        Identity("nm_pair", frozenset({"a1", "b1"})): {"k": "key", "a": 5, "b": 6}
    }
    stale = _event("nm_a", "a1", 1, time=1 - STALE, a=5)
    assert _runs(stale, _event("nm_b", "b1", 3, b=6)) == {}
    assert _runs(_event("nm_a", "a1", 1), _event("nm_a", "a1", 9)) == {}  # a duplicate


def test_either_fires_on_x_alone_or_on_y_and_z_together() -> None:
    assert _runs(_event("nm_x", "x", 1, x=1)) == {
        Identity("nm_either", frozenset({"x"})): {"k": "key", "x": 1, "y": -1, "z": -1}
    }
    assert _runs(_event("nm_y", "y", 1)) == {}
    both = _runs(_event("nm_y", "y", 1, y=2), _event("nm_z", "z", 2, z=3))
    assert both == {
        Identity("nm_either", frozenset({"y", "z"})): {"k": "key", "x": -1, "y": 2, "z": 3}
    }


def test_a_threshold_of_three_counts_distinct_ids() -> None:
    three = [_event("nm_th", f"t{n}", n) for n in range(3)]
    assert set(_runs(*three)) == {Identity("nm_count", frozenset({"t0", "t1", "t2"}))}
    assert _runs(*three[:2], _event("nm_th", "t1", 5)) == {}  # t1 again is not a third


def test_a_sequence_fires_on_event_time_order_whatever_the_arrival_order() -> None:
    steps = [_event(f"nm_s{n}", f"s{n}", 10 - n, time=n, **{f"s{n}": n}) for n in (1, 2, 3)]
    assert _runs(*steps) == {
        Identity("nm_steps", frozenset({"s1", "s2", "s3"})): {"k": "key", "s1": 1, "s2": 2, "s3": 3}
    }
    reversed_ = [_event(f"nm_s{n}", f"s{n}", n, time=10 - n) for n in (1, 2, 3)]
    assert _runs(*reversed_) == {}


def test_debounced_events_split_where_the_quiet_period_ran_out() -> None:
    burst = [_event("nm_burst", f"b{n}", 0.3 * n, n=n) for n in range(3)]
    later = [_event("nm_burst", "c0", 0.6 + 2.5, n=10), _event("nm_burst", "c1", 3.4, n=11)]
    assert _runs(*burst, _event("nm_burst", "b1", 1.0, n=1), *later) == {
        Identity("nm_settle", frozenset({"b0", "b1", "b2"})): {"k": "key", "n": 2},
        Identity("nm_settle", frozenset({"c0", "c1"})): {"k": "key", "n": 11},
    }


def test_ticks_are_every_five_seconds_after_the_start_up_to_the_end() -> None:
    ticks = expected_runs([], T0 + timedelta(seconds=1), T0 + timedelta(seconds=15))
    assert [sorted(t.identity.made_from) for t in ticks] == [
        [(T0 + timedelta(seconds=s)).isoformat()] for s in (5, 10, 15)
    ]


def test_the_workload_gives_every_kind_runs_and_keys_that_must_not_fire() -> None:
    workload = Workload.generate(seed=7, duration=60)
    events = [
        Event(
            p.name,
            p.id,
            T0 + timedelta(seconds=p.time),
            T0 + timedelta(seconds=p.at),
            p.payload,
            0,
            n,
        )
        for n, p in enumerate(workload.publishes)
    ]
    runs = expected_runs(events, T0, T0)
    by_flow = {flow: sum(r.identity.flow == flow for r in runs) for flow in _KEYED}
    keys = {flow: len({e.key for e in events if _flow_of(e) == flow}) for flow in _KEYED}
    assert all(by_flow[f] > 0 for f in _KEYED), by_flow
    assert all(by_flow[f] < keys[f] for f in ("nm_pair", "nm_count", "nm_steps")), by_flow
    assert len({p.id for p in workload.publishes}) < len(workload.publishes)  # duplicates
    assert any(p.at - p.time > 60 for p in workload.publishes)  # late events
    assert workload.publishes == Workload.generate(seed=7, duration=60).publishes


_KEYED = ("nm_pair", "nm_either", "nm_count", "nm_steps", "nm_settle")


def _flow_of(event: Event) -> str:
    return {
        "a": "nm_pair",
        "b": "nm_pair",
        "x": "nm_either",
        "y": "nm_either",
        "z": "nm_either",
        "th": "nm_count",
        "s1": "nm_steps",
        "s2": "nm_steps",
        "s3": "nm_steps",
        "burst": "nm_settle",
    }[event.name.removeprefix("nm_")]


# The checker


def _run(
    name: str,
    flow: str,
    ids: list[str],
    phase: WorkflowPhase = WorkflowPhase.SUCCEEDED,
    **parameters: Any,
) -> RunRecord:
    return RunRecord(
        project="p",
        domain="d",
        name=name,
        flow=flow,
        entrypoint={},
        parameters=parameters,
        events=[{"id": i} for i in ids],
        phase=phase,
        created_at=T0,
        updated_at=T0,
    )


def _change(id: int, name: str, phase: str) -> PhaseChange:
    return PhaseChange(id=id, project="p", domain="d", name=name, flow="f", phase=phase, at=T0)


def test_the_checker_passes_what_matches_and_names_each_kind_of_difference() -> None:
    expected = [
        Expected(Identity("nm_either", frozenset({"x1"})), {"k": "a"}),
        Expected(Identity("nm_either", frozenset({"x2"})), {"k": "b"}),
        Expected(Identity("nm_either", frozenset({"x3"})), {"k": "c"}),
    ]
    good = Observed(
        runs=[
            _run("r1", "nm_either", ["x1"], k="a"),
            _run("r2", "nm_either", ["x2"], k="b"),
            _run("r3", "nm_either", ["x3"], k="c"),
        ],
        changes=[_change(1, "r1", "QUEUED"), _change(2, "r1", "SUCCEEDED")],
        published=["p.d.phase-1", "p.d.phase-2", "p.d.phase-2"],
        ledger={"r1": ["start", "done"], "r2": ["start", "done"], "r3": ["start", "done"]},
    )
    report = check(expected, good)
    assert report.passed, report.lines()
    assert report.lifecycle_repeated == 1

    bad = Observed(
        runs=[
            _run("r1", "nm_either", ["x1"], k="a"),
            _run("r1b", "nm_either", ["x1"], k="a"),  # duplicated
            _run("r3", "nm_either", ["x3"], WorkflowPhase.FAILED, k="z"),  # wrong, failed
            _run("r4", "nm_either", ["x9"], k="q"),  # unexpected; x2 is lost
        ],
        changes=[
            _change(1, "r1", "QUEUED"),
            _change(2, "r1", "SUCCEEDED"),
            _change(3, "r3", "QUEUED"),
        ],
        published=["p.d.phase-2", "p.d.phase-1"],  # out of order; phase-3 is missing
        ledger={
            "r1": ["start", "done", "start", "done"],
            "r1b": ["start", "done"],
            "r3": ["start"],
            "r4": ["start", "done"],
        },
    )
    report = check(expected, bad)
    assert not report.passed
    assert [len(report.lost), len(report.duplicated), len(report.unexpected)] == [1, 1, 1]
    assert "x2" in report.lost[0] and "r1b" in report.duplicated[0]
    assert report.wrong_parameters == ["r3 nm_either(x3): {'k': 'z'}, expected {'k': 'c'}"]
    assert [line.split()[0] for line in report.not_succeeded] == ["r3"]
    assert [line.split(":")[0] for line in report.ran] == ["r1", "r3"]
    assert report.lifecycle_missing == ["r3 QUEUED (p.d.phase-3)"]
    assert report.lifecycle_out_of_order == ["r1"]


def test_each_succeeded_pair_run_must_be_followed_by_one_after_run() -> None:
    pair = _run("pair-1", "nm_pair", ["a", "b"], k="key")
    expected = [Expected(Identity("nm_pair", frozenset({"a", "b"})), {"k": "key"})]
    ledger = {"pair-1": ["start", "done"]}
    report = check(expected, Observed([pair], [], [], ledger))
    assert report.lost == ["nm_after(pair-1) {}"]
    after = _run("after-1", "nm_after", [])
    after.events.append({"payload": {"execution_id": {"name": "pair-1"}}})
    ledger["after-1"] = ["start", "done"]
    assert check(expected, Observed([pair, after], [], [], ledger)).passed


def test_a_late_landing_may_split_a_debounced_key_but_not_lose_or_share_its_ids() -> None:
    late = Event("nm_burst", "b1", T0, T0, {"k": "key", "n": 1}, 0, 1, landed_late=True)
    expected = expected_runs([_event("nm_burst", "b0", 0, n=0), late], T0, T0)
    assert [e.loose for e in expected] == [True]
    ledger = {"r1": ["start", "done"], "r2": ["start", "done"]}

    def settled(*groups: list[str]) -> Observed:
        runs = [
            _run(f"r{n}", "nm_settle", [], k="key", n=0).model_copy(
                update={"trigger_info": {"debounce": {"coalesced_event_ids": ids}}}
            )
            for n, ids in enumerate(groups, start=1)
        ]
        return Observed(runs, [], [], ledger)

    assert check(expected, settled(["b0", "b1"])).passed
    assert check(expected, settled(["b0"], ["b1"])).passed
    assert check(expected, settled(["b0"])).lost
    assert check(expected, settled(["b0", "b1"], ["b1"])).duplicated


def test_the_checker_reports_a_phase_entered_twice_and_an_event_the_store_never_made() -> None:
    expected = [Expected(Identity("nm_either", frozenset({"x1"})), {"k": "a"})]
    changes = [
        _change(1, "r1", "QUEUED"),
        _change(2, "r1", "SUCCEEDED"),
        _change(3, "r1", "SUCCEEDED"),
    ]
    published = ["p.d.phase-1", "p.d.phase-2", "p.d.phase-3", "p.d.phase-9"]
    observed = Observed(
        [_run("r1", "nm_either", ["x1"], k="a")],
        changes,
        published,
        {"r1": ["start", "done"]},
        {f"p.d.phase-{n}" for n in (1, 2, 3)},
    )
    report = check(expected, observed)
    assert report.history_repeated == ["r1: its run entered ['SUCCEEDED'] more than once"]
    assert report.lifecycle_phantom == ["p.d.phase-9"]


def test_a_flow_that_ran_to_the_end_twice_is_allowed_only_when_its_run_had_two_attempts() -> None:
    expected = [Expected(Identity("nm_either", frozenset({"x1"})), {"k": "a"})]
    twice = {"r1": ["start", "done", "start", "done"]}
    run = _run("r1", "nm_either", ["x1"], k="a").model_copy(update={"attempts": 1})
    assert check(expected, Observed([run], [], [], twice)).ran
    # the first attempt was killed after the flow ended, before it reported
    run = run.model_copy(update={"attempts": 2})
    assert check(expected, Observed([run], [], [], twice)).passed

"""The event-flow graph's read model: which nodes and edges what is deployed makes, what
each sensor's node says it holds, and the rates on the edges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sensors.queries.graph import Activity, FlowGraph, build_graph, flow_graph, rate_text
from sensors.queries.sensors import DependencyStatus, KeyStatus, SensorStatus
from sensors.runs.activity import add_activity, minute_of
from sensors.runs.deploy import deploy
from sensors.runs.models import DeployedSensor, KeyProgress, NewRun, RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from sensors.sources.store import deploy_sources
from tests.fixtures.records import AT, hold
from tests.fixtures.runs import new_run
from triggers import trigger, trigger_on_finish
from triggers.declarations import flow_spec
from triggers.sources import EventSource
from triggers.spec import finished_event


def status(
    flow: str,
    deps: list[tuple[str, str]] | None = None,
    *,
    trigger_name: str = "trigger",
    held: dict[str, list[str]] | None = None,
    progress: list[KeyProgress] | None = None,
    keys: list[KeyStatus] | None = None,
    **fields: Any,
) -> SensorStatus:
    """A deployed sensor of ``flow`` on ``deps`` ((dep, event name) pairs), holding ``held``
    (event ids by dependency)."""
    sensor_id = f"{flow}.{trigger_name}"
    deps = deps if deps is not None else [(flow + "_event", flow + "_event")]
    sensor = DeployedSensor(
        project="p",
        domain="d",
        sensor_id=sensor_id,
        flow=flow,
        trigger=trigger_name,
        dependencies=[{"dep": dep, "name": name} for dep, name in deps],
        within_seconds=fields.pop("within_seconds", 3600.0),
        deployed_at=AT,
        updated_at=AT,
        **fields,
    )
    held = held or {}
    return SensorStatus(
        sensor=sensor,
        dependencies=[
            DependencyStatus(
                dep=dep,
                event=name,
                held=[hold(sensor_id, "", dep, e) for e in held.get(dep, [])],
                filtered=None,
                state="satisfied" if held.get(dep) else "awaited",
            )
            for dep, name in deps
        ],
        progress=progress or [],
        keys=keys or [],
        last_run=None,
        failures=[],
    )


def source(name: str, event: str) -> EventSource:
    return EventSource(name=name, url="nats://127.0.0.1:4222", subject=f"{name}.>", event=event)


def graph(
    statuses: list[SensorStatus],
    sources: list[EventSource] | None = None,
    activity: Activity | None = None,
) -> FlowGraph:
    return build_graph(
        statuses, sources or [], activity or Activity(), project="p", domain="d", at=AT
    )


def kinds(g: FlowGraph) -> dict[str, str]:
    return {n.id: n.kind for n in g.nodes}


def edges(g: FlowGraph) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in g.edges}


def node(g: FlowGraph, node_id: str) -> Any:
    return next(n for n in g.nodes if n.id == node_id)


def edge(g: FlowGraph, source: str, target: str) -> Any:
    return next(e for e in g.edges if (e.source, e.target) == (source, target))


def test_a_source_feeds_an_event_that_a_sensor_waits_for_and_the_sensor_fires_its_flow() -> None:
    g = graph(
        [status("load", [("orders_loaded", "orders_loaded")])], [source("orders", "orders_loaded")]
    )
    assert kinds(g) == {
        "source:orders": "source",
        "event:orders_loaded": "event",
        "sensor:load.trigger": "sensor",
        "flow:load": "flow",
    }
    assert edges(g) == {
        ("source:orders", "event:orders_loaded"),
        ("event:orders_loaded", "sensor:load.trigger"),
        ("sensor:load.trigger", "flow:load"),
    }
    # Sources come first and flows last, so that the drawing reads left to right
    assert [n.kind for n in g.nodes] == ["source", "event", "sensor", "flow"]
    assert next(e for e in g.edges).id == "edge:event:orders_loaded->sensor:load.trigger"


def test_a_wildcard_dependency_is_one_node_that_the_names_it_fits_feed() -> None:
    # Given two sensors on orders.* and a source sending orders.eu.created
    statuses = [
        status("view", [("orders", "orders.*")], options={"debounce": 30.0}),
        status("audit", [("orders", "orders.*")]),
    ]
    g = graph(statuses, [source("shop", "orders.eu.created")])
    # Then orders.* is one node, fed by the source, and no node stands for the name itself
    assert kinds(g)["event:orders.*"] == "wildcard"
    assert "event:orders.eu.created" not in kinds(g)
    assert {("source:shop", "event:orders.*"), ("event:orders.*", "sensor:view.trigger")} <= edges(
        g
    )
    assert ("event:orders.*", "sensor:audit.trigger") in edges(g)
    assert node(g, "sensor:view.trigger").lines[0] == "debounce: orders, debounced 0:00:30"


def test_a_finished_flow_feeds_the_sensors_of_the_flows_that_run_after_it() -> None:
    # Given report on data_updated, and dashboard on report's finish (SUCCEEDED only)
    finish = status("dashboard", [("report", finished_event("report"))])
    finish.sensor.dependencies[0]["filters"] = [
        {"path": "$.phase", "op": "in", "value": ["SUCCEEDED"]}
    ]
    g = graph([status("report", [("data_updated", "data_updated")]), finish])
    # Then the chain is report -> "report finished" -> dashboard's sensor -> dashboard
    assert kinds(g)["lifecycle:report"] == "lifecycle"
    assert node(g, "lifecycle:report").title == "report finished"
    assert {
        ("sensor:report.trigger", "flow:report"),
        ("flow:report", "lifecycle:report"),
        ("lifecycle:report", "sensor:dashboard.trigger"),
        ("sensor:dashboard.trigger", "flow:dashboard"),
    } <= edges(g)
    assert edge(g, "lifecycle:report", "sensor:dashboard.trigger").label == "$.phase in SUCCEEDED"
    assert node(g, "sensor:dashboard.trigger").lines == ["on finish: report"]


def test_an_upstream_flow_that_is_not_deployed_still_has_its_node() -> None:
    g = graph([status("after", [("upstream", finished_event("upstream"))])])
    assert ("flow:upstream", "lifecycle:upstream") in edges(g)
    assert kinds(g)["flow:upstream"] == "flow"


def test_a_schedule_is_a_clock_that_fires_its_flow() -> None:
    # Given a flow on a schedule and on an event
    clock = status(
        "nightly",
        [],
        trigger_name="schedule",
        schedule={"cron": "0 2 * * *", "rate": None, "tz": "Europe/Berlin", "catchup": "latest"},
    )
    clock.next_tick = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    g = graph([clock, status("nightly", [("rebuild", "rebuild")])])
    # Then the clock and the sensor both point at the one flow
    assert kinds(g)["schedule:nightly.schedule"] == "schedule"
    assert {
        ("schedule:nightly.schedule", "flow:nightly"),
        ("sensor:nightly.trigger", "flow:nightly"),
    } <= edges(g)
    clock_node = node(g, "schedule:nightly.schedule")
    assert clock_node.title == "◷ nightly.schedule"
    assert clock_node.lines == [
        "cron 0 2 * * * (Europe/Berlin), catchup latest",
        "next tick 2026-11-24T01:00:00+00:00",
    ]


def test_edges_carry_events_fires_and_finishes_per_minute_over_the_window() -> None:
    # Given 30 events from the source in 15 minutes, 12 of them offered, 3 runs that
    # started and 1 that finished
    activity = Activity(
        minutes=15,
        events={
            ("tripwire://sources/orders", "orders_loaded"): 30,
            ("tripwire://publish", "orders_loaded"): 15,
        },
        offers={("load.trigger", "orders"): 12},
        fires={"load.trigger": 3},
        finishes={"load": 1},
    )
    statuses = [
        status("load", [("orders", "orders_loaded")]),
        status("after", [("load", finished_event("load"))]),
    ]
    g = graph(statuses, [source("orders", "orders_loaded")], activity)
    # Then each edge has its count and its rate
    rates = {(e.source, e.target): (e.count, e.per_minute) for e in g.edges}
    assert rates[("source:orders", "event:orders_loaded")] == (30, 2.0)
    assert rates[("event:orders_loaded", "sensor:load.trigger")] == (12, 0.8)
    assert rates[("sensor:load.trigger", "flow:load")] == (3, 0.2)
    assert rates[("flow:load", "lifecycle:load")] == (1, 0.067)
    assert rates[("sensor:after.trigger", "flow:after")] == (0, 0.0)
    # And an event's node counts it from every sender: 45 in 15 minutes
    assert node(g, "event:orders_loaded").lines == ["3/min"]


@pytest.mark.parametrize(
    ("count", "text"), [(1, "0.067/min"), (30, "2/min"), (100, "6.7/min"), (1500, "100/min")]
)
def test_a_rate_reads_with_two_figures(count: int, text: str) -> None:
    assert rate_text(count, 15) == text


def test_a_source_that_computes_event_names_points_at_the_names_it_sent() -> None:
    # Given a source naming events from the payload: one name consumed, one not
    activity = Activity(
        events={
            ("tripwire://sources/pay", "payment.settled"): 6,
            ("tripwire://sources/pay", "payment.refused"): 3,
        }
    )
    g = graph(
        [status("reconcile", [("p", "payment.settled")])], [source("pay", "$.meta.type")], activity
    )
    # Then it points at both, the one nobody waits for marked so, and needs no note
    assert edge(g, "source:pay", "event:payment.settled").count == 6
    assert edge(g, "source:pay", "event:payment.refused").count == 3
    assert node(g, "event:payment.refused").lines == ["0.2/min", "no sensor waits for it"]
    assert "note:pay" not in kinds(g)


def test_a_source_that_computes_names_and_sent_none_yet_has_a_computed_note() -> None:
    g = graph([status("reconcile", [("p", "payment.settled")])], [source("pay", "$.meta.type")])
    assert kinds(g)["note:pay"] == "note"
    assert node(g, "note:pay").title == "(computed)"
    assert edges(g) >= {("source:pay", "note:pay")}
    assert ("source:pay", "event:payment.settled") not in edges(g)


def test_a_template_source_may_feed_the_awaited_names_that_fit_it() -> None:
    # Given shop.{$.status}, and sensors on shop.placed and on unrelated
    statuses = [status("pack", [("placed", "shop.placed")]), status("other", [("x", "unrelated")])]
    g = graph(statuses, [source("shop", "shop.{$.status}")])
    # Then a dashed (possible) edge goes to shop.placed only, until events are seen
    possible = edge(g, "source:shop", "event:shop.placed")
    assert possible.possible and possible.count == 0
    assert ("source:shop", "event:unrelated") not in edges(g)
    # And once shop.placed events are seen, the edge is a real one
    seen = Activity(events={("tripwire://sources/shop", "shop.placed"): 15})
    g = graph(statuses, [source("shop", "shop.{$.status}")], seen)
    assert not edge(g, "source:shop", "event:shop.placed").possible


def test_the_names_one_source_sent_are_capped_and_the_rest_counted_on_a_note() -> None:
    activity = Activity(events={("tripwire://sources/pay", f"e{i:02}"): 1 for i in range(15)})
    g = graph([], [source("pay", "$.type")], activity)
    assert sum(1 for e in g.edges if e.target.startswith("event:")) == 12
    assert node(g, "note:pay").lines == ["and 3 more names"]
    assert edge(g, "source:pay", "note:pay").count == 3


def test_a_sensor_node_says_its_kind_window_condition_and_what_it_holds() -> None:
    # Given an all-of sensor holding two of its three events
    all_of = status("join", [("a", "a"), ("b", "b"), ("c", "c")], held={"a": ["e1"], "b": ["e2"]})
    # And a threshold at 3 of 5, a correlated pair holding one key, a condition
    threshold = status(
        "escalate",
        [("failed", "order_failed")],
        within_seconds=600.0,
        options={"threshold": 5},
        progress=[KeyProgress(sensor_id="escalate.trigger", key="", count=3)],
    )
    correlated = status(
        "ship",
        [("paid", "paid"), ("packed", "packed")],
        correlate_by={"paid": "$.order", "packed": "$.order"},
        keys=[
            KeyStatus(key="7", held=[hold("ship.trigger", "7", "paid", "e3")], awaited=["packed"])
        ],
    )
    condition = status("pay", [("p", "p"), ("q", "q")], conditions="p || q")
    g = graph([all_of, threshold, correlated, condition])
    assert node(g, "sensor:join.trigger").lines == [
        "all-of: a && b && c within 1:00:00",
        "holds 2 of 3: a, b",
    ]
    assert node(g, "sensor:escalate.trigger").lines == [
        "threshold: 5 x failed within 0:10:00",
        "count 3/5",
    ]
    assert node(g, "sensor:ship.trigger").lines == [
        "all-of: paid && packed within 1:00:00, by $.order",
        "key 7: holds paid",
    ]
    assert node(g, "sensor:pay.trigger").lines == ["condition: p || q within 1:00:00", "holds none"]


def test_a_sensor_node_lists_two_keys_and_counts_the_rest() -> None:
    keys = [
        KeyStatus(key=str(k), held=[hold("ship.trigger", str(k), "paid", f"e{k}")], awaited=[])
        for k in range(5)
    ]
    s = status(
        "ship", [("paid", "paid"), ("packed", "packed")], correlate_by={"paid": "$.o"}, keys=keys
    )
    lines = node(graph([s]), "sensor:ship.trigger").lines
    assert lines[-3:] == ["key 0: holds paid", "key 1: holds paid", "and 3 more keys"]
    # And so does a threshold counting for many keys
    counts = [KeyProgress(sensor_id="up.trigger", key=f'"c{k}"', count=k) for k in range(1, 5)]
    up = status("up", [("x", "x")], options={"threshold": 9}, correlate_by={"x": "$.c"})
    up.progress = counts
    assert node(graph([up]), "sensor:up.trigger").lines[-3:] == [
        'count 1/9 (key "c1")',
        'count 2/9 (key "c2")',
        "and 2 more keys",
    ]


def test_a_flow_node_says_how_its_newest_run_went() -> None:
    # Given a flow with two triggers whose last runs differ
    runs = []
    for name, minutes, phase in (("old", 0, "SUCCEEDED"), ("new", 5, "FAILED")):
        runs.append(
            RunRecord.model_validate(
                {
                    **new_run(name, flow="load").model_dump(),
                    "phase": phase,
                    "created_at": AT + timedelta(minutes=minutes),
                    "updated_at": AT + timedelta(minutes=minutes),
                }
            )
        )
    first, second = status("load", [("a", "a")]), status("load", [("b", "b")], trigger_name="t2")
    first.last_run, second.last_run = runs[1], runs[0]
    # Then the flow's node shows the newer one's phase
    assert node(graph([first, second]), "flow:load").lines == ["last run FAILED"]
    assert node(graph([second, first]), "flow:load").lines == ["last run FAILED"]


def test_a_dependency_named_unlike_its_event_and_its_filters_label_the_edge() -> None:
    s = status("pay", [("payment", "payment"), ("waived", "manual.waiver")])
    s.sensor.dependencies[0]["filters"] = [{"path": "$.amount", "op": ">=", "value": 100}]
    g = graph([s])
    assert edge(g, "event:payment", "sensor:pay.trigger").label == "$.amount >= 100"
    assert edge(g, "event:manual.waiver", "sensor:pay.trigger").label == "waived"


@trigger(events=["orders_loaded", "customers_loaded"], within="1h")
def join(rows: int = 0) -> None: ...


@trigger_on_finish(flow="join")
def after_join() -> None: ...


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as opened:
        await deploy(opened, [flow_spec(join), flow_spec(after_join)], project="p", domain="d")
        await deploy_sources(opened, [source("orders", "orders_loaded")], project="p", domain="d")
        yield opened


async def test_the_graph_of_a_store_counts_the_last_window_only(store: RunStore) -> None:
    # Given events counted 5 and 40 minutes ago, and a run of join that started and finished
    now = datetime.now(UTC)
    old, recent = minute_of(now - timedelta(minutes=40)), minute_of(now - timedelta(minutes=5))
    await add_activity(
        store,
        "p",
        "d",
        events={
            (old, "tripwire://sources/orders", "orders_loaded"): 100,
            (recent, "tripwire://sources/orders", "orders_loaded"): 6,
        },
        offers={(recent, "join.trigger", "orders_loaded"): 4},
        marks=[],
    )
    await store.create_run(run_request("r1"))
    await store.transition("p", "d", "r1", WorkflowPhase.RUNNING)
    await store.transition("p", "d", "r1", WorkflowPhase.SUCCEEDED)
    # When the graph is read
    g = await flow_graph(store, project="p", domain="d", now=now)
    # Then only the last 15 minutes count
    rates = {(e.source, e.target): e.count for e in g.edges}
    assert rates[("source:orders", "event:orders_loaded")] == 6
    assert rates[("event:orders_loaded", "sensor:join.trigger")] == 4
    assert rates[("sensor:join.trigger", "flow:join")] == 1
    assert rates[("flow:join", "lifecycle:join")] == 1
    assert node(g, "sensor:join.trigger").lines[-1] == "holds none"


def run_request(name: str) -> NewRun:
    return NewRun(
        project="p",
        domain="d",
        name=name,
        flow="join",
        sensor_id="join.trigger",
        entrypoint={},
        parameters={},
        events=[],
    )

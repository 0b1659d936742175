"""The event flow as a graph: what each deployed source, event, sensor and flow triggers.

Sources produce event names; sensors wait for names (a wildcard is one node);
sensors fire flows; a finished flow's lifecycle event feeds the sensors of its
``trigger_on_finish`` flows; a scheduled trigger is a clock. Nodes say what each
sensor holds now, and edges carry events per minute over the activity window.
:mod:`sensors.api.graph_svg` draws it; ``GET /flow?format=json`` returns it.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field, computed_field

from sensors.queries.sensors import SensorStatus, describe, progress_lines, sensor_statuses
from sensors.queries.times import when
from sensors.runs.activity import WINDOW_MINUTES, event_counts, offer_counts
from sensors.runs.phases import TERMINAL_PHASES
from sensors.runs.store import RunStore
from sensors.runs.tables import runs
from sensors.sources.store import deployed_sources
from triggers.sources import ADDRESS, EventSource, parse_expression
from triggers.spec import finished_event

__all__ = [
    "Activity",
    "FlowGraph",
    "GraphEdge",
    "GraphNode",
    "NodeKind",
    "build_graph",
    "flow_graph",
    "rate_text",
]

NodeKind = Literal["source", "event", "wildcard", "sensor", "schedule", "flow", "lifecycle", "note"]

# The order of the nodes: upstream first, as the drawing reads.
_ORDER: tuple[NodeKind, ...] = (
    "source",
    "note",
    "event",
    "wildcard",
    "lifecycle",
    "schedule",
    "sensor",
    "flow",
)
_NAMES_PER_SOURCE = 12  # names seen from one computed-name source drawn; the rest are counted
_KEYS_SHOWN = 2  # correlation keys a sensor node lists
_WIDTH = 52  # characters per line of a node
_LONGEST_RUN = timedelta(days=1)  # finishes are counted among runs created this long before


class GraphNode(BaseModel):
    """One node: a source, an event name or pattern, a sensor, a clock, a flow, a lifecycle
    event, or a note."""

    id: str = Field(description="Kind and name, stable across refreshes: `sensor:flow.trigger`.")
    kind: NodeKind
    name: str = Field(description="What it names: a source, event name, sensor id or flow.")
    title: str = Field(description="The first line of the node.")
    lines: list[str] = Field(default_factory=list, description="What the node says below it.")
    tooltip: str = ""


class GraphEdge(BaseModel):
    """What flows from one node to another, with its rate over the activity window."""

    source: str = Field(description="Id of the node it leaves.")
    target: str = Field(description="Id of the node it enters.")
    count: int = Field(0, description="Events (or fires, or finished runs) in the window.")
    per_minute: float = Field(0.0, description="`count` divided by the window's minutes.")
    label: str = Field("", description="What else it says: dependencies named unlike events.")
    possible: bool = Field(
        False, description="Only a guess: a computed event name that would fit, none seen yet."
    )

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented use
    @property
    def id(self) -> str:
        return f"edge:{self.source}->{self.target}"


class FlowGraph(BaseModel):
    """The graph of one project and domain, as of ``at``."""

    project: str
    domain: str
    at: datetime
    window_minutes: int = Field(description="The window the edges' rates are measured over.")
    nodes: list[GraphNode]
    edges: list[GraphEdge]


@dataclass(frozen=True)
class Activity:
    """What happened in the window, as counts (rates are count / minutes)."""

    minutes: int = WINDOW_MINUTES
    events: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """By (CloudEvent source, event name): events the sensor stage saw."""
    offers: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """By (sensor id, dependency): events offered to each dependency."""
    fires: Mapping[str, int] = field(default_factory=dict)
    """By sensor id: runs it created."""
    finishes: Mapping[str, int] = field(default_factory=dict)
    """By flow: runs that finished."""


async def flow_graph(
    store: RunStore,
    *,
    project: str,
    domain: str,
    now: datetime,
    minutes: int = WINDOW_MINUTES,
) -> FlowGraph:
    """The graph of what is deployed in ``project``/``domain``, with what the sensor stage
    saw and the runs that started and finished in the last ``minutes`` before ``now``."""
    since = now - timedelta(minutes=minutes)
    statuses = await sensor_statuses(store, project=project, domain=domain)
    sources = [spec for spec, _ in await deployed_sources(store, project=project, domain=domain)]
    events = await event_counts(store, project=project, domain=domain, since=since)
    offers = await offer_counts(store, project=project, domain=domain, since=since)
    fires, finishes = await _run_counts(store, project=project, domain=domain, since=since)
    activity = Activity(minutes, events, offers, fires, finishes)
    return build_graph(statuses, sources, activity, project=project, domain=domain, at=now)


async def _run_counts(
    store: RunStore, *, project: str, domain: str, since: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """Runs fired since ``since`` by sensor, and runs finished since then by flow (among
    those created up to :data:`_LONGEST_RUN` before), counted by the database."""
    scope = (runs.c.project == project, runs.c.domain == domain)
    fired = (
        sa.select(runs.c.sensor_id, sa.func.count(type_=sa.Integer))
        .where(*scope, runs.c.created_at >= since, runs.c.sensor_id.is_not(None))
        .group_by(runs.c.sensor_id)
    )
    ended = (
        sa.select(runs.c.flow, sa.func.count(type_=sa.Integer))
        .where(
            *scope,
            runs.c.created_at >= since - _LONGEST_RUN,
            runs.c.finished_at >= since,
            runs.c.phase.in_([p.value for p in TERMINAL_PHASES]),
        )
        .group_by(runs.c.flow)
    )
    async with store.connection() as conn:
        fires = {str(row[0]): int(row[1]) for row in (await conn.execute(fired)).all()}
        finishes = {str(row[0]): int(row[1]) for row in (await conn.execute(ended)).all()}
    return fires, finishes


def build_graph(
    statuses: Sequence[SensorStatus],
    sources: Sequence[EventSource],
    activity: Activity,
    *,
    project: str,
    domain: str,
    at: datetime,
) -> FlowGraph:
    """The graph of these sensors and sources, with the rates of ``activity``."""
    builder = _Builder(activity)
    for status in sorted(statuses, key=lambda s: s.sensor.sensor_id):
        builder.sensor(status)
    for spec in sorted(sources, key=lambda s: s.name):
        builder.source(spec)
    builder.wildcards_of_flows()
    return FlowGraph(
        project=project,
        domain=domain,
        at=at,
        window_minutes=activity.minutes,
        nodes=sorted(builder.nodes.values(), key=lambda n: (_ORDER.index(n.kind), n.id)),
        edges=sorted(builder.edges.values(), key=lambda e: e.id),
    )


class _Builder:
    def __init__(self, activity: Activity) -> None:
        self.activity = activity
        self.nodes: dict[str, GraphNode] = {}
        self.edges: dict[tuple[str, str], GraphEdge] = {}
        self.last_phase: dict[str, tuple[datetime, str]] = {}  # by flow: newest run's phase
        self.seen: dict[str, int] = {}  # events by name, whatever their source
        for (_, name), count in activity.events.items():
            self.seen[name] = self.seen.get(name, 0) + count

    def edge(self, source: str, target: str, count: int = 0, label: str = "") -> None:
        found = self.edges.get((source, target))
        if found is None:
            found = self.edges[(source, target)] = GraphEdge(source=source, target=target)
        found.count += count
        found.per_minute = round(found.count / self.activity.minutes, 3)
        if label and label not in found.label.split(", "):
            found.label = ", ".join(filter(None, [found.label, label]))

    def flow(self, name: str) -> str:
        node = self.nodes.get(f"flow:{name}")
        if node is None:
            node = self.nodes[f"flow:{name}"] = GraphNode(
                id=f"flow:{name}", kind="flow", name=name, title=name, tooltip=f"flow {name}"
            )
        return node.id

    def sensor(self, status: SensorStatus) -> None:
        s = status.sensor
        flow = self.flow(s.flow)
        if status.last_run is not None:
            newest = self.last_phase.get(s.flow)
            run = status.last_run
            if newest is None or run.created_at > newest[0]:
                self.last_phase[s.flow] = (run.created_at, run.phase.value)
                self.nodes[flow].lines = [f"last run {run.phase.value}"]
        fires = self.activity.fires.get(s.sensor_id, 0)
        if s.schedule:
            node = GraphNode(
                id=f"schedule:{s.sensor_id}",
                kind="schedule",
                name=s.sensor_id,
                title=f"◷ {s.sensor_id}",
                lines=[*_wrap(describe(s)), f"next tick {when(status.next_tick)}"],
                tooltip=f"schedule {s.sensor_id}: {describe(s)}",
            )
            self.nodes[node.id] = node
            self.edge(node.id, flow, fires)
            return
        kind = _kind(status)
        node = GraphNode(
            id=f"sensor:{s.sensor_id}",
            kind="sensor",
            name=s.sensor_id,
            title=s.sensor_id,
            lines=[*_wrap(f"{kind}: {describe(s)}"), *_holds(status, kind)],
            tooltip=_sensor_tooltip(status, kind),
        )
        self.nodes[node.id] = node
        self.edge(node.id, flow, fires)
        for dep in s.dependencies:
            name = dep["name"]
            offered = self.activity.offers.get((s.sensor_id, dep["dep"]), 0)
            self.edge(self.event(name), node.id, offered, _dependency_label(dep))

    def event(self, name: str) -> str:
        """The node of a dependency's event name: a lifecycle event, wildcard or name."""
        upstream = name.removeprefix(finished_event(""))
        if upstream != name and not name.endswith("*"):
            node_id = f"lifecycle:{upstream}"
            if node_id not in self.nodes:
                self.nodes[node_id] = GraphNode(
                    id=node_id,
                    kind="lifecycle",
                    name=name,
                    title=f"{upstream} finished",
                    tooltip=f"lifecycle event {name}: a run of {upstream} finished",
                )
                flow = self.flow(upstream)
                self.edge(flow, node_id, self.activity.finishes.get(upstream, 0))
            return node_id
        node_id = f"event:{name}"
        if node_id not in self.nodes:
            wildcard = name.endswith("*")
            if wildcard:
                seen = sum(n for event, n in self.seen.items() if event.startswith(name[:-1]))
            else:
                seen = self.seen.get(name, 0)
            lines = [rate_text(seen, self.activity.minutes)] if seen else []
            self.nodes[node_id] = GraphNode(
                id=node_id,
                kind="wildcard" if wildcard else "event",
                name=name,
                title=name,
                lines=[f"any name starting {name[:-1]!r}", *lines] if wildcard else lines,
                tooltip=f"{'pattern' if wildcard else 'event'} {name}",
            )
        return node_id

    def source(self, spec: EventSource) -> None:
        node_id = f"source:{spec.name}"
        where = getattr(spec, ADDRESS[spec.kind])
        self.nodes[node_id] = GraphNode(
            id=node_id,
            kind="source",
            name=spec.name,
            title=spec.name,
            lines=[f"{spec.kind} {where}", *_wrap(f"event {spec.event}")],
            tooltip=f"source {spec.name}: {spec.kind} {where}, event {spec.event}",
        )
        seen = sorted(
            (
                (name, n)
                for (source, name), n in self.activity.events.items()
                if source == spec.origin
            ),
            key=lambda item: (-item[1], item[0]),
        )
        expression = parse_expression(spec.event, where="event")
        if expression.kind == "literal":
            seen = [(spec.event, sum(n for name, n in seen if name == spec.event))]
        for name, count in seen[:_NAMES_PER_SOURCE]:
            for target in self.consumers(name):
                self.edge(node_id, target, count)
        guessed = self.possible(node_id, expression.parts) if expression.kind == "template" else 0
        more = len(seen) - _NAMES_PER_SOURCE
        if expression.kind != "literal" and (more > 0 or (not seen and not guessed)):
            note = GraphNode(
                id=f"note:{spec.name}",
                kind="note",
                name=spec.event,
                title="(computed)",
                lines=[f"and {more} more names"] if more > 0 else ["names known as events arrive"],
                tooltip=f"source {spec.name} names each event from {spec.event}",
            )
            self.nodes[note.id] = note
            self.edge(node_id, note.id, sum(n for _, n in seen[_NAMES_PER_SOURCE:]))

    def possible(self, source: str, parts: Sequence[tuple[bool, str]]) -> int:
        """Dashed edges from a source whose event names are a template to the awaited names
        that fit it and that it has not sent yet; how many."""
        pattern = re.compile("".join(".+" if hole else re.escape(text) for hole, text in parts))
        fitting = [
            node.id
            for node in self.nodes.values()
            if node.kind == "event"
            and pattern.fullmatch(node.name)
            and (source, node.id) not in self.edges
        ]
        for target in fitting:
            self.edges[(source, target)] = GraphEdge(source=source, target=target, possible=True)
        return len(fitting)

    def consumers(self, name: str) -> list[str]:
        """The nodes an event ``name`` reaches: its own and the wildcards it fits."""
        found = [
            node.id
            for node in self.nodes.values()
            if node.kind == "wildcard" and name.startswith(node.name[:-1])
        ]
        if f"event:{name}" in self.nodes:
            found.insert(0, f"event:{name}")
        elif not found:
            node = self.nodes[self.event(name)]
            node.lines.append("no sensor waits for it")
            found.append(node.id)
        return found

    def wildcards_of_flows(self) -> None:
        """A wildcard over lifecycle events is fed by every flow whose finish it fits."""
        for node in list(self.nodes.values()):
            if node.kind != "wildcard":
                continue
            for flow in [n for n in self.nodes.values() if n.kind == "flow"]:
                if finished_event(flow.name).startswith(node.name[:-1]):
                    self.edge(flow.id, node.id, self.activity.finishes.get(flow.name, 0))


def rate_text(count: int, minutes: int) -> str:
    """``12/min``, ``0.47/min``: ``count`` events in ``minutes``, per minute."""
    per_minute = count / minutes
    return f"{per_minute:.2g}/min" if per_minute < 10 else f"{per_minute:.0f}/min"


def _dependency_label(dep: Mapping[str, Any]) -> str:
    """What an edge into a sensor says besides its rate: the dependency's name where it is
    not the event's, and its filters (``$.amount >= 100``)."""
    filters = []
    for f in dep.get("filters", ()):
        if "path" in f:
            value = f.get("value")
            shown = ", ".join(map(str, value)) if isinstance(value, list) else json.dumps(value)
            filters.append(f"{f['path']} {f['op']} {shown}")
        else:
            filters.append(f"{f.get('start')}-{f.get('stop')} {f.get('tz', 'UTC')}")
    text = f" {dep.get('filters_operator', 'and')} ".join(filters)
    if dep["dep"] != dep["name"] and not dep["name"].startswith(finished_event("")):
        text = f"{dep['dep']}: {text}" if text else dep["dep"]
    return text


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, break_on_hyphens=False) or [""]


def _kind(status: SensorStatus) -> str:
    """The sensor's kind in a word: what decides when it fires."""
    s = status.sensor
    options = s.options or {}
    for kind in ("absence", "threshold", "sequence", "debounce"):
        if options.get(kind):
            return kind
    if len(s.dependencies) == 1:
        return "on finish" if s.dependencies[0]["name"].startswith(finished_event("")) else "event"
    return "condition" if s.conditions else "all-of"


def _holds(status: SensorStatus, kind: str) -> list[str]:
    """What the sensor holds now, briefly: ``holds 2 of 3: a, b``, ``key 7: holds a``,
    ``count 3/5``; the first keys only, and how many more there are."""
    lines = _first(
        [" ".join(line.split()) for line in progress_lines(status.sensor, status.progress)]
    )
    if status.keys:
        lines += _first(
            [f"key {k.key}: holds {', '.join(h.dep for h in k.held)}" for k in status.keys]
        )
    elif kind in ("all-of", "condition"):
        held = [d.dep for d in status.dependencies if d.held]
        total = len(status.dependencies)
        lines.append(f"holds {len(held)} of {total}: {', '.join(held)}" if held else "holds none")
    return [part for line in lines for part in _wrap(line)]


def _first(lines: list[str]) -> list[str]:
    more = len(lines) - _KEYS_SHOWN
    return lines[:_KEYS_SHOWN] + ([f"and {more} more keys"] if more > 0 else [])


def _sensor_tooltip(status: SensorStatus, kind: str) -> str:
    s = status.sensor
    parts = [f"sensor {s.sensor_id} ({kind}): {describe(s)}"]
    for dep in status.dependencies:
        line = f"{dep.dep} on {dep.event}: {dep.state}"
        if dep.filtered is not None:
            line += f", {dep.filtered.count} filtered out"
        parts.append(line)
    if status.last_run is not None:
        parts.append(f"last run {status.last_run.name} {status.last_run.phase.value}")
    if status.failures:
        parts.append(f"{len(status.failures)} recent trigger failures")
    return "; ".join(parts)

"""The correlation core: offers and a clock in, fire decisions and state changes out. No I/O.

The stateful half of the pure core (the stateless half, routing events to
sensors, is :mod:`sensors.routing`; the engine puts a Kafka repartition hop
between them). :class:`Correlator` holds, per (sensor, correlation key), the
latest event of each dependency and the ids already counted. It fires when the
sensor's condition holds over events that all fall inside one window of
``within`` (event time; arrival time when an event has none), and consumes what
it used.

Semantics (DESIGN.md §3): latest wins per dependency; an event id counts once
per sensor for as long as the window; events of different correlation keys
never combine; held events and remembered ids older than ``now - within`` are
dropped, so state is bounded by dependencies x live keys.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from sensors.mapping import extract_parameters
from sensors.sensor import Sensor
from triggers.conditions import Condition
from triggers.envelope import Envelope
from triggers.errors import TriggerError
from triggers.spec import EventDependency

__all__ = [
    "Arrival",
    "Correlator",
    "Decisions",
    "Failure",
    "Fire",
    "Held",
    "Offer",
    "Rejection",
    "RunEvent",
    "StateChange",
]


# The core's records are msgspec Structs: sensors.records encodes them for Kafka
# directly, in C, and they cost a third of a frozen dataclass to create. None of them
# can be part of a reference cycle, so the garbage collector need not track them (gc=False).


class Arrival(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An event as the engine received it: the envelope and the broker's timestamp."""

    envelope: Envelope
    arrived_at: datetime

    @property
    def event_time(self) -> datetime:
        return self.envelope.time or self.arrived_at


class Offer(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An event for one dependency of one multi-event sensor, under one correlation key."""

    sensor_id: str
    dep: str
    key: str
    arrival: Arrival


class RunEvent(msgspec.Struct, frozen=True, gc=False):
    """An event that contributed to a run, as run requests and run records show it."""

    name: str
    id: str
    source: str
    time: datetime | None
    payload: dict[str, Any]
    dependency: str


class Fire(msgspec.Struct, frozen=True, gc=False):
    """A decision to launch one run."""

    sensor: Sensor
    run_name: str
    parameters: dict[str, Any]
    events: tuple[RunEvent, ...]  # oldest first


class Failure(msgspec.Struct, frozen=True, gc=False):
    """A satisfied trigger that could not become a run, with the reason."""

    sensor: Sensor
    event_name: str
    event_id: str
    reason: str


class Rejection(msgspec.Struct, frozen=True, gc=False):
    """An event a dependency filtered out, and why."""

    sensor_id: str
    dep: str
    event_id: str
    reason: str


@dataclass
class Decisions:
    fires: list[Fire] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class Held(msgspec.Struct, array_like=True, gc=False):
    """The state of one sensor under one correlation key."""

    events: dict[str, Arrival] = msgspec.field(default_factory=dict)  # dep -> latest event
    seen: dict[str, datetime] = msgspec.field(default_factory=dict)  # event id -> event time


class StateChange(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one batch changed in one (sensor, correlation key): a changelog entry.

    ``events`` is what the key holds after the batch (at most one event per
    dependency); ``seen`` only the ids that the batch counted. Expiry is not
    recorded: whoever replays the changelog expires by the clock. So an entry
    costs what the batch changed, not what the key remembers, which for a busy
    key is every event id of the last window. Entries must be replayed in the
    order of the batches that made them.
    """

    sensor_id: str
    key: str
    events: dict[str, Arrival]
    seen: dict[str, datetime]


StateKey = tuple[str, str]  # (sensor id, correlation key)


class Correlator:
    """Correlation state of multi-event sensors, changed only by offers and the clock."""

    def __init__(self, sensors: Iterable[Sensor] = ()) -> None:
        self.sensors: dict[str, Sensor] = {}
        self._rules: dict[str, tuple[Sensor, timedelta, Condition]] = {}
        self.state: dict[StateKey, Held] = {}
        # When the oldest entry of each key expires, and a heap of those deadlines:
        # expiry visits only the keys that are due, so it costs what expires, not
        # what is held. A key has one live deadline; older heap entries are skipped.
        self._due: dict[StateKey, datetime] = {}
        self._deadlines: list[tuple[datetime, StateKey]] = []
        self.update(sensors)

    def update(self, sensors: Iterable[Sensor]) -> set[str]:
        """Serve ``sensors`` from now on (a new deployment).

        A sensor whose flow, trigger and deployment time are unchanged keeps its
        state; the state of a changed or removed one is dropped, since what it held
        was gathered under another definition. Returns the ids whose state went.
        """
        new = {s.id: s for s in sensors}
        gone = {
            sid
            for sid, old in self.sensors.items()
            if sid not in new or not _same_sensor(old, new[sid])
        }
        self.sensors = {
            sid: self.sensors[sid] if sid in self.sensors and sid not in gone else sensor
            for sid, sensor in new.items()
        }
        self._rules = {
            s.id: (s, s.trigger.within, s.trigger.condition()) for s in self.sensors.values()
        }
        if gone:
            self.drop(lambda key: key[0] not in gone)
        return gone

    def offer(self, offers: Iterable[Offer], now: datetime) -> tuple[Decisions, list[StateChange]]:
        """Apply a batch of offers; return the decisions and what changed, per key."""
        decisions = Decisions()
        counted: dict[StateKey, dict[str, datetime]] = {}
        rules, state, due, deadlines = self._rules, self.state, self._due, self._deadlines
        horizons: dict[timedelta, datetime] = {}
        for offer in offers:
            rule = rules.get(offer.sensor_id)
            if rule is None:
                continue  # undeployed since the offer was routed
            sensor, within, condition = rule
            arrival = offer.arrival
            event_time = arrival.event_time
            horizon = horizons.get(within)
            if horizon is None:
                horizon = horizons[within] = now - within
            if event_time < horizon:
                continue  # already outside every window it could join
            key = (offer.sensor_id, offer.key)
            event_id = arrival.envelope.id
            held = state.get(key)
            if held is None:
                # A new key (with many sensors or keys, most offers): nothing to compare.
                events = {offer.dep: arrival}
                state[key] = Held(events, {event_id: event_time})
                counted[key] = {event_id: event_time}
                deadline = due[key] = event_time + within
                heapq.heappush(deadlines, (deadline, key))
            else:
                seen = held.seen
                if event_id in seen:
                    continue  # counted once per sensor
                seen[event_id] = event_time
                ids = counted.get(key)
                if ids is None:
                    counted[key] = {event_id: event_time}
                else:
                    ids[event_id] = event_time
                deadline = event_time + within
                if deadline < due.get(key, deadline + within):
                    self._schedule(key, deadline)
                events = held.events
                current = events.get(offer.dep)
                if current is None or current.event_time <= event_time:
                    events[offer.dep] = arrival  # latest wins
            if not condition.holds(events.keys()):
                continue  # cheap test first: most events do not complete a condition
            newest = max(a.event_time for a in events.values())
            live = {d: a for d, a in events.items() if a.event_time >= newest - within}
            if condition.holds(live.keys()):
                for dep in live:
                    del events[dep]
                make_fire(sensor, live, decisions)
        changes = [
            StateChange(key[0], key[1], dict(state[key].events), ids)
            for key, ids in counted.items()
        ]
        return decisions, changes

    def _schedule(self, key: StateKey, deadline: datetime) -> None:
        self._due[key] = deadline
        heapq.heappush(self._deadlines, (deadline, key))

    def expire(self, now: datetime) -> set[StateKey]:
        """Drop held events and remembered ids older than their window; return changed keys."""
        changed: set[StateKey] = set()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] < now:
            deadline, key = heapq.heappop(deadlines)
            if self._due.get(key) != deadline:
                continue  # superseded by an earlier deadline, already handled
            del self._due[key]
            held = self.state.get(key)
            rule = self._rules.get(key[0])
            if held is None or rule is None:
                if self.state.pop(key, None) is not None:
                    changed.add(key)
                continue
            within = rule[1]
            events, seen = _inside(held.events, held.seen, now - within)
            if len(seen) < len(held.seen) or len(events) < len(held.events):
                changed.add(key)
            if seen or events:
                held.events, held.seen = events, seen
                oldest = min([*seen.values(), *(a.event_time for a in events.values())])
                self._schedule(key, oldest + within)
            else:
                del self.state[key]
        return changed

    def held(self, sensor_id: str) -> dict[str, dict[str, Arrival]]:
        """What a sensor holds: correlation key -> dependency -> event."""
        return {
            k[1]: dict(h.events) for k, h in self.state.items() if k[0] == sensor_id and h.events
        }

    def state_size(self) -> int:
        """Held events plus remembered ids, across all sensors (for bounds and metrics)."""
        return sum(len(h.events) + len(h.seen) for h in self.state.values())

    def held_count(self) -> int:
        return sum(len(h.events) for h in self.state.values())

    def apply(self, change: StateChange, now: datetime) -> None:
        """Replay one changelog entry, keeping only what is still inside its window.

        Filtering on the way in keeps a replay's memory bounded like the live state,
        however long the changelog has grown.
        """
        rule = self._rules.get(change.sensor_id)
        if rule is None:
            return  # a sensor no longer deployed
        within = rule[1]
        events, seen = _inside(change.events, change.seen, now - within)
        key = (change.sensor_id, change.key)
        held = self.state.get(key)
        if held is None:
            if not (seen or events):
                return
            held = self.state[key] = Held()
        held.events = events
        held.seen.update(seen)
        times = [*seen.values(), *(a.event_time for a in events.values())]
        if times:
            deadline = min(times) + within
            if deadline < self._due.get(key, deadline + within):
                self._schedule(key, deadline)

    def drop(self, keep: Any) -> None:
        """Forget every key for which ``keep(key)`` is false (partitions given away)."""
        for key in [k for k in self.state if not keep(k)]:
            del self.state[key]
            self._due.pop(key, None)
        self._deadlines = [d for d in self._deadlines if d[1] in self._due]
        heapq.heapify(self._deadlines)


def make_fire(sensor: Sensor, used: dict[str, Arrival], decisions: Decisions) -> None:
    """Map and coerce the parameters of a satisfied sensor into a Fire, or a Failure."""
    contributing = [(dep, used[dep.dep]) for dep in sensor.dependencies if dep.dep in used]
    raw: dict[str, Any] = {}
    # Declaration order: a later dependency's value wins for the same parameter. A
    # dependency that did not contribute (an OR condition) leaves its parameters to defaults.
    names = sensor.parameter_names
    for dep, arrival in contributing:
        raw.update(extract_parameters(dep, arrival.envelope, names))
    if len(contributing) > 1:
        contributing.sort(key=_oldest_first)
    latest = contributing[-1][1].envelope
    try:
        parameters = sensor.schema.coerce(raw)
    except TriggerError as exc:
        reason = f"event {latest.name!r} (id {latest.id}) for flow {sensor.flow.name!r}: {exc}"
        decisions.failures.append(Failure(sensor, latest.name, latest.id, reason))
        return
    events = []
    for dep, arrival in contributing:
        e = arrival.envelope
        events.append(RunEvent(e.name, e.id, e.source, e.time, e.payload, dep.dep))
    run_name = sensor.run_name([e.id for e in events])
    decisions.fires.append(Fire(sensor, run_name, parameters, tuple(events)))


def _same_sensor(a: Sensor, b: Sensor) -> bool:
    return a.deployed_at == b.deployed_at and a.trigger == b.trigger and a.flow == b.flow


def _oldest_first(pair: tuple[EventDependency, Arrival]) -> tuple[datetime, str]:
    return pair[1].event_time, pair[1].envelope.id


def _inside(
    events: dict[str, Arrival], seen: dict[str, datetime], horizon: datetime
) -> tuple[dict[str, Arrival], dict[str, datetime]]:
    """The held events and remembered ids that are not older than ``horizon``."""
    return (
        {d: a for d, a in events.items() if a.event_time >= horizon},
        {i: t for i, t in seen.items() if t >= horizon},
    )

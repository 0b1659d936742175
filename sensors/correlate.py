"""The correlation core: events and a clock in, fire decisions and state changes out. No I/O.

Two halves, so that the engine can put a Kafka repartition hop between them:

- :class:`Router` is stateless. An index maps each event name to the
  (sensor, dependency) pairs that wait for it, so an event costs work only for
  those. It drops events from before a sensor's deployment, applies filters,
  computes correlation keys, fires single-event sensors at once, and turns
  the rest into :class:`Offer` s for the stateful half.
- :class:`Correlator` holds, per (sensor, correlation key), the latest event of
  each dependency and the ids already counted. It fires when the sensor's
  condition holds over events that all fall inside one window of ``within``
  (event time; arrival time when an event has none), and consumes what it used.

Semantics (DESIGN.md §3): latest wins per dependency; an event id counts once
per sensor for as long as the window; events of different correlation keys
never combine; held events and remembered ids older than ``now - within`` are
dropped, so state is bounded by dependencies x live keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sensors.filters import correlation_key, rejection
from sensors.mapping import extract_parameters
from sensors.sensor import Sensor
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
    "Routed",
    "Router",
]


@dataclass(frozen=True, slots=True)
class Arrival:
    """An event as the engine received it: the envelope and the broker's timestamp."""

    envelope: Envelope
    arrived_at: datetime

    @property
    def event_time(self) -> datetime:
        return self.envelope.time or self.arrived_at


@dataclass(frozen=True, slots=True)
class Offer:
    """An event for one dependency of one multi-event sensor, under one correlation key."""

    sensor_id: str
    dep: str
    key: str
    arrival: Arrival


@dataclass(frozen=True, slots=True)
class Fire:
    """A decision to launch one run."""

    sensor: Sensor
    run_name: str
    parameters: dict[str, Any]
    events: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Failure:
    """A satisfied trigger that could not become a run, with the reason."""

    sensor: Sensor
    event_name: str
    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event a dependency filtered out, and why."""

    sensor_id: str
    dep: str
    event_id: str
    reason: str


@dataclass
class Decisions:
    fires: list[Fire] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass
class Routed(Decisions):
    offers: list[Offer] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    ignored_before_deploy: int = 0


class Router:
    """Indexes sensors by event name and routes events to them. Stateless."""

    def __init__(self, sensors: Iterable[Sensor] = ()) -> None:
        self._index: dict[str, list[tuple[Sensor, EventDependency]]] = {}
        self.sensors: dict[str, Sensor] = {}
        for sensor in sensors:
            self.add(sensor)

    def add(self, sensor: Sensor) -> None:
        if sensor.id in self.sensors:
            raise ValueError(f"sensor {sensor.id!r} is already deployed")
        self.sensors[sensor.id] = sensor
        for dep in sensor.dependencies:
            self._index.setdefault(dep.name, []).append((sensor, dep))

    def interested(self, name: str) -> Sequence[tuple[Sensor, EventDependency]]:
        """The (sensor, dependency) pairs an event name reaches."""
        return self._index.get(name, ())

    def route(self, arrivals: Iterable[Arrival]) -> Routed:
        """Route a batch: fires of single-event sensors, offers for the others."""
        routed = Routed()
        index = self._index
        for arrival in arrivals:
            pairs = index.get(arrival.envelope.name)
            if not pairs:
                continue
            for sensor, dep in pairs:
                if arrival.arrived_at < sensor.deployed_at:
                    routed.ignored_before_deploy += 1
                    continue
                if dep.filters:
                    reason = rejection(dep, arrival.envelope, arrival.event_time)
                    if reason is not None:
                        routed.rejections.append(
                            Rejection(sensor.id, dep.dep, arrival.envelope.id, reason)
                        )
                        continue
                if len(sensor.dependencies) == 1:
                    # Nothing to hold: fire at once. A redelivered event maps to the same
                    # run name, which the run store accepts once, so no id memory is needed.
                    make_fire(sensor, {dep.dep: arrival}, routed)
                    continue
                key = ""
                correlate_by = sensor.trigger.correlate_by
                if correlate_by is not None:
                    found = correlation_key(correlate_by[dep.dep], arrival.envelope)
                    if found is None:
                        routed.rejections.append(
                            Rejection(
                                sensor.id,
                                dep.dep,
                                arrival.envelope.id,
                                f"correlation key {correlate_by[dep.dep]} is missing",
                            )
                        )
                        continue
                    key = found
                routed.offers.append(Offer(sensor.id, dep.dep, key, arrival))
        return routed


@dataclass(slots=True)
class Held:
    """The state of one sensor under one correlation key."""

    events: dict[str, Arrival] = field(default_factory=dict)  # dependency -> latest event
    seen: dict[str, datetime] = field(default_factory=dict)  # event id -> event time


StateKey = tuple[str, str]  # (sensor id, correlation key)


class Correlator:
    """Correlation state of multi-event sensors, changed only by offers and the clock."""

    def __init__(self, sensors: Iterable[Sensor] = ()) -> None:
        self.sensors: dict[str, Sensor] = {s.id: s for s in sensors}
        self._conditions = {s.id: s.trigger.condition() for s in self.sensors.values()}
        self.state: dict[StateKey, Held] = {}

    def offer(self, offers: Iterable[Offer], now: datetime) -> tuple[Decisions, set[StateKey]]:
        """Apply a batch of offers; return the decisions and the state keys they changed."""
        decisions = Decisions()
        changed: set[StateKey] = set()
        for offer in offers:
            sensor = self.sensors.get(offer.sensor_id)
            if sensor is None:
                continue  # undeployed since the offer was routed
            if self._take(sensor, offer, now, decisions):
                changed.add((offer.sensor_id, offer.key))
        return decisions, changed

    def _take(self, sensor: Sensor, offer: Offer, now: datetime, decisions: Decisions) -> bool:
        arrival = offer.arrival
        event_time = arrival.event_time
        within = sensor.trigger.within
        if event_time < now - within:
            return False  # already outside every window it could join
        key = (sensor.id, offer.key)
        held = self.state.get(key)
        if held is None:
            held = self.state[key] = Held()
        event_id = arrival.envelope.id
        if event_id in held.seen:
            return False  # counted once per sensor
        held.seen[event_id] = event_time
        current = held.events.get(offer.dep)
        if current is None or current.event_time <= event_time:
            held.events[offer.dep] = arrival  # latest wins
        newest = max(a.event_time for a in held.events.values())
        live = {d: a for d, a in held.events.items() if a.event_time >= newest - within}
        if self._conditions[sensor.id].holds(live.keys()):
            for dep in live:
                del held.events[dep]
            make_fire(sensor, live, decisions)
        return True

    def expire(self, now: datetime) -> set[StateKey]:
        """Drop held events and remembered ids older than their window; return changed keys."""
        changed: set[StateKey] = set()
        for key, held in list(self.state.items()):
            sensor = self.sensors.get(key[0])
            if sensor is None:
                del self.state[key]
                changed.add(key)
                continue
            horizon = now - sensor.trigger.within
            events = {d: a for d, a in held.events.items() if a.event_time >= horizon}
            seen = {i: t for i, t in held.seen.items() if t >= horizon}
            if len(events) == len(held.events) and len(seen) == len(held.seen):
                continue
            changed.add(key)
            if events or seen:
                held.events, held.seen = events, seen
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

    # Snapshots of one key, for the changelog (JSON-able).

    def dump(self, key: StateKey) -> dict[str, Any] | None:
        held = self.state.get(key)
        if held is None:
            return None
        return {
            "events": {d: _dump_arrival(a) for d, a in held.events.items()},
            "seen": {i: t.timestamp() for i, t in held.seen.items()},
        }

    def load(self, key: StateKey, data: dict[str, Any] | None) -> None:
        if data is None:
            self.state.pop(key, None)
            return
        self.state[key] = Held(
            events={d: _load_arrival(a) for d, a in data["events"].items()},
            seen={i: datetime.fromtimestamp(t, UTC) for i, t in data["seen"].items()},
        )

    def drop(self, keep: Any) -> None:
        """Forget every key for which ``keep(key)`` is false (partitions given away)."""
        for key in [k for k in self.state if not keep(k)]:
            del self.state[key]


def make_fire(sensor: Sensor, used: dict[str, Arrival], decisions: Decisions) -> None:
    """Map and coerce the parameters of a satisfied sensor into a Fire, or a Failure."""
    raw: dict[str, Any] = {}
    events = []
    # Declaration order: a later dependency's value wins for the same parameter.
    for dep in sensor.dependencies:
        arrival = used.get(dep.dep)
        if arrival is None:
            continue  # not contributing (an OR condition): its parameters keep defaults
        raw.update(extract_parameters(dep, arrival.envelope, sensor.parameter_names))
        events.append({**arrival.envelope.to_dict(), "dependency": dep.dep})
    events.sort(key=lambda e: (e["time"] or "", e["id"]))
    latest = events[-1]
    try:
        parameters = sensor.schema.coerce(
            raw,
            context=f"event {latest['name']!r} (id {latest['id']}) for flow {sensor.flow.name!r}",
        )
    except TriggerError as exc:
        decisions.failures.append(
            Failure(
                sensor=sensor, event_name=latest["name"], event_id=latest["id"], reason=str(exc)
            )
        )
        return
    decisions.fires.append(
        Fire(
            sensor=sensor,
            run_name=sensor.run_name(e["id"] for e in events),
            parameters=parameters,
            events=tuple(events),
        )
    )


def _dump_arrival(arrival: Arrival) -> dict[str, Any]:
    return {**arrival.envelope.to_dict(), "arrived_at": arrival.arrived_at.timestamp()}


def _load_arrival(data: dict[str, Any]) -> Arrival:
    raw_time = data.get("time")
    return Arrival(
        Envelope(
            name=data["name"],
            id=data["id"],
            source=data.get("source", ""),
            time=datetime.fromisoformat(raw_time) if raw_time else None,
            payload=data.get("payload") or {},
        ),
        datetime.fromtimestamp(data["arrived_at"], UTC),
    )


def window_end(arrival: Arrival, within: timedelta) -> datetime:
    """When a held event stops counting."""
    return arrival.event_time + within

"""The correlation core: events and a clock in, fire decisions out. No I/O.

Semantics (DESIGN.md §3):

- An index maps each event name to the (sensor, dependency) pairs that wait for
  it, so an event costs work only for the sensors that depend on its name.
- A sensor fires when every dependency holds an event and all held events fall
  inside one window of ``within``, measured on event time (arrival time when
  the event has none). Single-event triggers are the one-dependency case.
- Latest wins: a dependency holds the newest matching event. Firing consumes
  the events it used. An event id counts once per sensor; the memory for that
  is kept only as long as the window.
- Events that reached the broker before the sensor was deployed are ignored.
- Held events older than ``now - within`` expire, so state is bounded by
  dependencies x live correlation keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sensors.mapping import extract_parameters
from sensors.sensor import Sensor
from triggers.envelope import Envelope
from triggers.errors import TriggerError
from triggers.spec import EventDependency

__all__ = ["Arrival", "Correlator", "Decisions", "Failure", "Fire"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """An event as the engine received it: the envelope and the broker's timestamp."""

    envelope: Envelope
    arrived_at: datetime

    @property
    def event_time(self) -> datetime:
        return self.envelope.time or self.arrived_at


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


@dataclass
class Decisions:
    fires: list[Fire] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    ignored_before_deploy: int = 0


@dataclass
class _State:
    held: dict[str, Arrival] = field(default_factory=dict)
    # event id -> event time, to count each id once for as long as the window.
    seen: dict[str, datetime] = field(default_factory=dict)


class Correlator:
    """Holds sensors, their index and their correlation state."""

    def __init__(self, sensors: Iterable[Sensor] = ()) -> None:
        self._index: dict[str, list[tuple[Sensor, EventDependency]]] = {}
        self._state: dict[str, _State] = {}
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

    def held(self, sensor_id: str) -> dict[str, Arrival]:
        """The events a sensor currently holds, by dependency name."""
        state = self._state.get(sensor_id)
        return dict(state.held) if state else {}

    def process(self, arrivals: Iterable[Arrival]) -> Decisions:
        """Feed a batch of arrivals, in order; return what to launch and what failed.

        Expiry is separate (:meth:`expire`), driven by the caller's clock, so that a
        batch costs work only for the sensors its events reach.
        """
        decisions = Decisions()
        for arrival in arrivals:
            for sensor, dep in self._index.get(arrival.envelope.name, ()):
                if arrival.arrived_at < sensor.deployed_at:
                    decisions.ignored_before_deploy += 1
                    continue
                self._offer(sensor, dep, arrival, decisions)
        return decisions

    def _offer(
        self, sensor: Sensor, dep: EventDependency, arrival: Arrival, decisions: Decisions
    ) -> None:
        if len(sensor.dependencies) == 1:
            # Nothing to hold: fire at once. A redelivered event maps to the same run
            # name, which the run store accepts only once, so no id memory is needed.
            self._fire(sensor, {dep.dep: arrival}, decisions)
            return
        state = self._state.setdefault(sensor.id, _State())
        event_id = arrival.envelope.id
        if event_id in state.seen:
            return
        state.seen[event_id] = arrival.event_time
        current = state.held.get(dep.dep)
        if current is not None and current.event_time > arrival.event_time:
            return  # latest wins: an older event never replaces a newer one
        state.held[dep.dep] = arrival
        if len(state.held) < len(sensor.dependencies):
            return
        newest = max(a.event_time for a in state.held.values())
        window_start = newest - sensor.trigger.within
        stale = [name for name, a in state.held.items() if a.event_time < window_start]
        if stale:
            for name in stale:
                del state.held[name]
            return
        used, state.held = state.held, {}
        self._fire(sensor, used, decisions)

    def _fire(self, sensor: Sensor, used: dict[str, Arrival], decisions: Decisions) -> None:
        raw: dict[str, Any] = {}
        events = []
        # Declaration order: a later dependency's value wins for the same parameter.
        for dep in sensor.dependencies:
            arrival = used[dep.dep]
            raw.update(extract_parameters(dep, arrival.envelope, sensor.parameter_names))
            events.append({**arrival.envelope.to_dict(), "dependency": dep.dep})
        events.sort(key=lambda e: (e["time"] or "", e["id"]))
        latest = events[-1]
        try:
            parameters = sensor.schema.coerce(
                raw,
                context=f"event {latest['name']!r} (id {latest['id']}) for flow "
                f"{sensor.flow.name!r}",
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

    def expire(self, now: datetime) -> None:
        """Drop held events and remembered ids that fell out of every window."""
        for sensor_id, state in list(self._state.items()):
            horizon = now - self.sensors[sensor_id].trigger.within
            state.held = {k: a for k, a in state.held.items() if a.event_time >= horizon}
            state.seen = {k: t for k, t in state.seen.items() if t >= horizon}
            if not state.held and not state.seen:
                del self._state[sensor_id]

    def state_size(self) -> int:
        """Held events plus remembered ids, across all sensors (for bounds and metrics)."""
        return sum(len(s.held) + len(s.seen) for s in self._state.values())

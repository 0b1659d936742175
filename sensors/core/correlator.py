"""The correlation core: offers and a clock in, fire decisions and state changes out. No I/O.

The stateful half of the pure core (the stateless half, routing events to
sensors, is :mod:`sensors.core.router`; the engine puts a Kafka repartition hop
between them). :class:`Correlator` holds, per (sensor, correlation key), the
latest event of each dependency and the ids already counted, plus what
thresholds, absences and debounce need (:class:`~sensors.core.types.Progress`).
An all-of sensor fires when its condition holds over events that all fall
inside one window of ``within`` (event time; arrival time when an event has
none), and consumes what it used; the other kinds are in :mod:`sensors.core.trigger_kinds`.

Semantics (docs/architecture.md, "Semantics"): latest wins per dependency; an event id counts once
per sensor for as long as the window; events of different correlation keys
never combine; held events and remembered ids older than ``now - within`` are
dropped, so state is bounded by dependencies x live keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sensors.core.sensor import Sensor
from sensors.core.timers import Timers
from sensors.core.trigger_kinds import (
    MAX_ABSENT_WINDOWS,
    Fired,
    absence_due,
    absence_event,
    first_window,
    next_absence_deadline,
    sequence_event,
    take_all_of,
    threshold_event,
)
from sensors.core.types import (
    Arrival,
    Decisions,
    Failure,
    Held,
    Offer,
    Pending,
    Progress,
    StateChange,
    StateKey,
    make_fire,
)
from triggers.conditions import Condition
from triggers.spec import AbsenceSpec

__all__ = ["MAX_COALESCED", "Correlator"]

MAX_COALESCED = 1000
"""A debounced fire that coalesced this many event ids launches without waiting longer,
so a stream that never goes quiet still runs, and its state stays bounded."""


@dataclass(frozen=True, slots=True)
class _Kind:
    """What a sensor that is not a plain all-of needs: its kind and options."""

    sensor: Sensor
    within: timedelta
    condition: Condition
    name: str  # 'all', 'threshold', 'sequence' or 'absence'
    debounce: timedelta | None
    threshold: int
    steps: dict[str, int]
    absence: AbsenceSpec | None

    @classmethod
    def of(cls, sensor: Sensor) -> _Kind | None:
        t = sensor.trigger
        if t.kind == "all" and t.debounce is None:
            return None  # the fast path
        steps = {d.dep: i for i, d in enumerate(t.dependencies)}
        return cls(
            sensor, t.within, t.condition(), t.kind, t.debounce, t.threshold or 0, steps, t.absence
        )


_Rule = tuple[Sensor, timedelta, Condition, _Kind | None]


class Correlator:
    """Correlation state of stateful sensors, changed only by offers and the clock."""

    def __init__(self, sensors: Iterable[Sensor] = ()) -> None:
        self.sensors: dict[str, Sensor] = {}
        self._rules: dict[str, _Rule] = {}
        self._absences: dict[str, _Kind] = {}  # wall-clock absences: the clock creates their key
        self.state: dict[StateKey, Held] = {}
        # When the oldest entry of each key leaves its window: expiry visits only the
        # keys that are due, so it costs what expires, not what is held.
        self._expiry = Timers()
        # When the clock may fire something: an absence deadline or a debounce's end.
        self._timers = Timers()
        self._lag = timedelta(0)  # how far the watermark was behind the clock, last tick
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
            s.id: (s, s.trigger.within, s.trigger.condition(), _Kind.of(s))
            for s in self.sensors.values()
        }
        self._absences = {
            sid: kind
            for sid, (_, _, _, kind) in self._rules.items()
            if kind is not None and kind.absence is not None and kind.absence.after is None
        }
        if gone:
            self.drop(lambda key: key[0] not in gone)
        return gone

    def offer(self, offers: Iterable[Offer], now: datetime) -> tuple[Decisions, list[StateChange]]:
        """Apply a batch of offers; return the decisions and what changed, per key."""
        decisions = Decisions()
        counted: dict[StateKey, dict[str, datetime]] = {}
        rules, state, expiry = self._rules, self.state, self._expiry
        horizons: dict[timedelta, datetime] = {}
        for offer in offers:
            rule = rules.get(offer.sensor_id)
            if rule is None:
                continue  # undeployed since the offer was routed
            sensor, within, condition, kind = rule
            arrival = offer.arrival
            event_time = arrival.event_time
            horizon = horizons.get(within)
            if horizon is None:
                horizon = horizons[within] = now - within
            if event_time < horizon and (kind is None or kind.absence is None):
                continue  # already outside every window it could join
            key = (offer.sensor_id, offer.key)
            event_id = arrival.envelope.id
            held = state.get(key)
            if held is None:
                # A new key (with many sensors or keys, most offers): nothing to compare.
                held = state[key] = Held({}, {event_id: event_time}, _progress(kind))
                counted[key] = {event_id: event_time}
                expiry.set(key, event_time + within)
                events = held.events
                if kind is None:
                    events[offer.dep] = arrival
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
                expiry.earlier(key, event_time + within)
                events = held.events
                if kind is None:
                    current = events.get(offer.dep)
                    if current is None or current.event_time <= event_time:
                        events[offer.dep] = arrival  # latest wins
            if kind is not None:
                self._absorb(kind, key, held, offer.dep, arrival, decisions)
                continue
            if not condition.holds(events.keys()):
                continue  # cheap test first: most events do not complete a condition
            used = take_all_of(events, condition, within)
            if used is not None:
                make_fire(sensor, used, decisions)
        changes = [_change(key, state[key], ids) for key, ids in counted.items() if key in state]
        return decisions, changes

    def _absorb(
        self, kind: _Kind, key: StateKey, held: Held, dep: str, arrival: Arrival, d: Decisions
    ) -> None:
        progress = held.progress
        assert progress is not None
        fired: Fired | None = None
        if kind.absence is not None:
            if progress.cursor is None and kind.absence.after is None:
                progress.cursor = first_window(kind.sensor.deployed_at, kind.absence, kind.within)
            absence_event(held, dep, arrival, kind.absence, kind.within)
        elif kind.name == "threshold":
            fired = threshold_event(progress, dep, arrival, kind.threshold, kind.within)
        elif kind.name == "sequence":
            fired = sequence_event(held, dep, arrival, kind.steps, kind.within)
        else:  # all-of, debounced
            current = held.events.get(dep)
            if current is None or current.event_time <= arrival.event_time:
                held.events[dep] = arrival
            if kind.condition.holds(held.events.keys()):
                used = take_all_of(held.events, kind.condition, kind.within)
                fired = (used, None, None) if used is not None else None
        if fired is not None:
            self._launch(kind, key, held, fired, d)
        self._arm(key, held, kind)

    def _launch(self, kind: _Kind, key: StateKey, held: Held, fired: Fired, d: Decisions) -> None:
        """Fire now, or hold the fire back until the key has been quiet for ``debounce``."""
        used, info, ids = fired
        if kind.debounce is None:
            make_fire(kind.sensor, used, d, info=info, ids=ids)
            return
        progress = held.progress
        assert progress is not None
        names = list(ids) if ids is not None else [a.envelope.id for a in used.values()]
        due = max(a.arrived_at for a in used.values()) + kind.debounce
        pending = progress.pending
        if pending is not None:
            known = set(pending.ids)
            names = pending.ids + [i for i in names if i not in known]
            pending = Pending(used, info, names, pending.fires + 1, max(pending.due, due))
        else:
            pending = Pending(used, info, names, 1, due)
        progress.pending = pending
        if len(pending.ids) >= MAX_COALESCED:
            self._flush(kind, held, d)

    def _flush(self, kind: _Kind, held: Held, d: Decisions) -> None:
        """Launch a key's debounced fire, recording what it coalesced."""
        assert held.progress is not None and held.progress.pending is not None
        pending, held.progress.pending = held.progress.pending, None
        coalesced = {"fires": pending.fires, "coalesced_event_ids": pending.ids}
        info = (pending.info or {}) | {"debounce": coalesced}
        make_fire(kind.sensor, pending.used, d, info=info, ids=pending.ids)

    def _arm(self, key: StateKey, held: Held, kind: _Kind) -> None:
        """Set the key's timer to the next moment the clock may decide something for it."""
        times = []
        progress = held.progress
        if progress is not None and progress.pending is not None:
            times.append(progress.pending.due)
        if kind.absence is not None:
            deadline = next_absence_deadline(held, kind.absence, kind.within)
            if deadline is not None:
                times.append(deadline + self._lag)
        if times:
            self._timers.set(key, min(times))
        else:
            self._timers.discard(key)

    def tick(
        self, now: datetime, watermark: datetime, owns: Callable[[StateKey], bool]
    ) -> tuple[Decisions, list[StateChange]]:
        """Decide what the clock decides: absences and the ends of quiet periods.

        ``watermark`` is the time up to which every event is known to have been
        offered (``now`` minus a grace for lag); an absence is decided only once it
        passed the window. ``owns`` says which keys this correlator is responsible
        for, so that a wall-clock absence starts on exactly one worker.
        """
        self._lag = max(now - watermark, timedelta(0))
        decisions, touched = Decisions(), []
        for sid, kind in self._absences.items():
            key = (sid, "")
            if key not in self.state and owns(key):
                assert kind.absence is not None
                cursor = first_window(kind.sensor.deployed_at, kind.absence, kind.within)
                held = self.state[key] = Held(progress=Progress(cursor=cursor))
                self._arm(key, held, kind)
                touched.append(key)
        for key in self._timers.pop(now):
            rule = self._rules.get(key[0])
            found = self.state.get(key)
            if rule is None or rule[3] is None or found is None or found.progress is None:
                continue
            kind, held, pending = rule[3], found, found.progress.pending
            if pending is not None and pending.due <= now:
                self._flush(kind, held, decisions)
            if kind.absence is not None:
                fired, skipped = absence_due(held, kind.absence, kind.within, watermark)
                for f in fired:
                    self._launch(kind, key, held, f, decisions)
                if skipped:
                    decisions.failures.append(_skipped(kind, skipped))
            self._arm(key, held, kind)
            touched.append(key)
        changes = [_change(key, self.state[key], {}) for key in touched if key in self.state]
        return decisions, changes

    def expire(self, now: datetime) -> set[StateKey]:
        """Drop held events and remembered ids older than their window; return changed keys."""
        changed: set[StateKey] = set()
        for key in self._expiry.pop(now, strict=True):
            held = self.state.get(key)
            rule = self._rules.get(key[0])
            if held is None or rule is None:
                if self.state.pop(key, None) is not None:
                    changed.add(key)
                continue
            if held.trim(now - rule[1]):
                changed.add(key)
            oldest = held.oldest()
            if oldest is not None:
                self._expiry.set(key, oldest + rule[1])
            elif held.progress is None or held.progress.empty():
                del self.state[key]
                self._timers.discard(key)
        return changed

    def held(self, sensor_id: str) -> dict[str, dict[str, Arrival]]:
        """What a sensor holds: correlation key -> dependency -> event."""
        return {
            k[1]: dict(h.events) for k, h in self.state.items() if k[0] == sensor_id and h.events
        }

    def state_size(self) -> int:
        """Held events, remembered and counted ids, across all sensors (for bounds and metrics)."""
        return sum(
            len(h.events) + len(h.seen) + (len(h.progress.counted) if h.progress else 0)
            for h in self.state.values()
        )

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
        key = (change.sensor_id, change.key)
        held = Held(dict(change.events), dict(change.seen), change.progress)
        held.trim(now - rule[1])
        current = self.state.get(key)
        if current is not None:
            current.events = held.events
            current.seen.update(held.seen)
            if held.progress is not None:
                current.progress = held.progress
            held = current
        elif not (held.events or held.seen) and (held.progress is None or held.progress.empty()):
            return
        self.state[key] = held
        oldest = held.oldest()
        if oldest is not None:
            self._expiry.earlier(key, oldest + rule[1])
        if rule[3] is not None:
            self._arm(key, held, rule[3])

    def drop(self, keep: Callable[[StateKey], bool]) -> None:
        """Forget every key for which ``keep(key)`` is false (partitions given away)."""
        for key in [k for k in self.state if not keep(k)]:
            del self.state[key]
        self._expiry.keep(lambda k: k in self.state)
        self._timers.keep(lambda k: k in self.state)


def _progress(kind: _Kind | None) -> Progress | None:
    return None if kind is None else Progress()


def _change(key: StateKey, held: Held, ids: dict[str, datetime]) -> StateChange:
    progress = held.progress.copy() if held.progress is not None else None
    return StateChange(key[0], key[1], dict(held.events), ids, progress)


def _skipped(kind: _Kind, count: int) -> Failure:
    dep = kind.sensor.dependencies[-1]
    reason = (
        f"skipped about {count} window(s) without {dep.name!r} from while no worker ran the "
        f"sensor; only the last {MAX_ABSENT_WINDOWS} fire"
    )
    return Failure(kind.sensor, dep.name, f"skipped:{count}", reason)


def _same_sensor(a: Sensor, b: Sensor) -> bool:
    return a.deployed_at == b.deployed_at and a.trigger == b.trigger and a.flow == b.flow

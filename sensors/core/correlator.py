"""The correlation core: offers and a watermark in, fire decisions and state changes out. No I/O.

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
never combine; held events and remembered ids older than ``watermark - within`` are
dropped, so state is bounded by dependencies x live keys.

Nothing here reads a clock. Time is the *watermark* of an offers partition (the
time up to which every event has been routed to it, from the marks the sensor stage
writes into the partition, :mod:`sensors.core.changelog`), and it moves only at
records of that partition. So what a partition decides is a function of its log:
a replay decides as the original did, whatever the batch boundaries, the wall
clock or the moment a worker took over (docs/architecture.md, "State and the changelog").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sensors.core.sensor import Sensor
from sensors.core.timers import Timers
from sensors.core.trigger_kinds import (
    Fired,
    Kind,
    absence_due,
    absence_event,
    first_window,
    next_absence_deadline,
    sequence_event,
    skipped_windows,
    take_all_of,
    threshold_event,
)
from sensors.core.types import (
    Arrival,
    Decisions,
    Held,
    Offer,
    Pending,
    Progress,
    StateChange,
    StateKey,
    event_id,
    make_fire,
)
from sensors.core.wire import partition_of
from triggers.conditions import Condition

__all__ = ["MAX_COALESCED", "Correlator"]

MAX_COALESCED = 1000
"""A debounced fire that coalesced this many event ids launches without waiting longer,
so a stream that never goes quiet still runs, and its state stays bounded."""


_Rule = tuple[Sensor, timedelta, Condition, Kind | None]


class Correlator:
    """Correlation state of stateful sensors, changed only by offers and watermarks.

    ``partitions`` is the offers topic's partition count: each key belongs to one
    partition (:func:`~sensors.core.wire.partition_of`), whose watermark decides for it.
    """

    def __init__(self, sensors: Iterable[Sensor] = (), partitions: int = 1) -> None:
        self.partitions = partitions
        self.sensors: dict[str, Sensor] = {}
        self._rules: dict[str, _Rule] = {}
        self._absences: dict[str, Kind] = {}  # wall-clock absences: time creates their key
        self.state: dict[StateKey, Held] = {}
        # Per partition, when the oldest entry of each key leaves its window: expiry visits
        # only the keys that are due, so it costs what expires, not what is held.
        self._expiry: dict[int, Timers] = {}
        # Per partition, when the watermark may fire something: an absence deadline or the
        # end of a debounce's quiet period.
        self._timers: dict[int, Timers] = {}
        self.update(sensors)

    def _partition(self, key: StateKey) -> int:
        return partition_of(key[0], key[1], self.partitions) if self.partitions > 1 else 0

    def _expiry_of(self, partition: int) -> Timers:
        timers = self._expiry.get(partition)
        if timers is None:
            timers = self._expiry[partition] = Timers()
        return timers

    def _timers_of(self, partition: int) -> Timers:
        timers = self._timers.get(partition)
        if timers is None:
            timers = self._timers[partition] = Timers()
        return timers

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
            s.id: (s, s.trigger.within, s.trigger.condition(), Kind.of(s))
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

    def offer(
        self, offers: Iterable[Offer], watermark: datetime | None, partition: int = 0
    ) -> tuple[Decisions, list[StateChange]]:
        """Apply offers of one partition, in log order, at the partition's ``watermark``
        (None: not known yet); return the decisions and what changed, per key."""
        decisions = Decisions()
        counted: dict[StateKey, dict[str, datetime]] = {}
        rules, state, expiry = self._rules, self.state, self._expiry_of(partition)
        horizons: dict[timedelta, datetime] = {}
        for offer in offers:
            rule = rules.get(offer.sensor_id)
            if rule is None:
                continue  # undeployed since the offer was routed
            sensor, within, condition, kind = rule
            arrival = offer.arrival
            event_time = arrival.event_time
            if watermark is not None:
                horizon = horizons.get(within)
                if horizon is None:
                    horizon = horizons[within] = watermark - within
                if event_time < horizon and (kind is None or kind.absence is None):
                    continue  # already outside every window it could join
            key = (offer.sensor_id, offer.key)
            event_key = arrival.key
            held = state.get(key)
            if held is None:
                # A new key (with many sensors or keys, most offers): nothing to compare.
                held = state[key] = Held({}, {event_key: event_time}, _progress(kind))
                counted[key] = {event_key: event_time}
                expiry.set(key, event_time + within)
                events = held.events
                if kind is None:
                    events[offer.dep] = arrival
            else:
                seen = held.seen
                if event_key in seen:
                    continue  # counted once per sensor
                seen[event_key] = event_time
                ids = counted.get(key)
                if ids is None:
                    counted[key] = {event_key: event_time}
                else:
                    ids[event_key] = event_time
                expiry.earlier(key, event_time + within)
                events = held.events
                if kind is None:
                    current = events.get(offer.dep)
                    if current is None or current.event_time <= event_time:
                        events[offer.dep] = arrival  # latest wins
            if kind is not None:
                self._absorb(kind, key, held, offer.dep, arrival, decisions, partition)
                continue
            if not condition.holds(events.keys()):
                continue  # cheap test first: most events do not complete a condition
            used = take_all_of(events, condition, within, sensor.trigger.reset_at)
            if used is not None:
                make_fire(sensor, used, decisions)
        changes = [
            _change(key, state[key], ids, rules[key[0]][0].version)
            for key, ids in counted.items()
            if key in state
        ]
        return decisions, changes

    def _absorb(
        self,
        kind: Kind,
        key: StateKey,
        held: Held,
        dep: str,
        arrival: Arrival,
        d: Decisions,
        partition: int,
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
                used = take_all_of(
                    held.events, kind.condition, kind.within, kind.sensor.trigger.reset_at
                )
                fired = (used, None, None) if used is not None else None
        if fired is not None:
            self._launch(kind, held, fired, d)
        self._arm(key, held, kind, partition)

    def _launch(self, kind: Kind, held: Held, fired: Fired, d: Decisions) -> None:
        """Fire now, or hold the fire back until the key has been quiet for ``debounce``."""
        used, info, ids = fired
        if kind.debounce is None:
            make_fire(kind.sensor, used, d, info=info, ids=ids)
            return
        progress = held.progress
        assert progress is not None
        names = list(ids) if ids is not None else [a.key for a in used.values()]
        arrived = max(a.arrived_at for a in used.values())
        due = arrived + kind.debounce
        pending = progress.pending
        if pending is not None and arrived > pending.due:
            # It came after the quiet period: that fire is complete, whether or not the
            # watermark has passed its end yet (so tick timing cannot merge the two).
            self._flush(kind, held, d)
            pending = None
        if pending is not None:
            known = set(pending.ids)
            names = pending.ids + [i for i in names if i not in known]
            pending = Pending(used, info, names, pending.fires + 1, max(pending.due, due))
        else:
            pending = Pending(used, info, names, 1, due)
        progress.pending = pending
        if len(pending.ids) >= MAX_COALESCED:
            self._flush(kind, held, d)

    def _flush(self, kind: Kind, held: Held, d: Decisions) -> None:
        """Launch a key's debounced fire, recording what it coalesced."""
        assert held.progress is not None and held.progress.pending is not None
        pending, held.progress.pending = held.progress.pending, None
        coalesced = {
            "fires": pending.fires,
            "coalesced_event_ids": list(map(event_id, pending.ids)),
        }
        info = (pending.info or {}) | {"debounce": coalesced}
        make_fire(kind.sensor, pending.used, d, info=info, ids=pending.ids)

    def _arm(self, key: StateKey, held: Held, kind: Kind, partition: int) -> None:
        """Set the key's timer to the watermark at which it may decide something next."""
        times = []
        progress = held.progress
        if progress is not None and progress.pending is not None:
            times.append(progress.pending.due)
        if kind.absence is not None:
            deadline = next_absence_deadline(held, kind.absence, kind.within)
            if deadline is not None:
                times.append(deadline)
        if times:
            self._timers_of(partition).set(key, min(times))
        else:
            self._timers_of(partition).discard(key)

    def advance(
        self, watermark: datetime, partition: int = 0
    ) -> tuple[Decisions, list[StateChange]]:
        """Decide what the partition's watermark, now at ``watermark``, decides: absences
        and the ends of quiet periods. Call :meth:`expire` after it.

        ``watermark`` is the time up to which every event has been offered to the
        partition; an absence is decided only once it passed the window, and a debounced
        fire once it passed the quiet period.
        """
        decisions, touched = Decisions(), []
        for sid, kind in self._absences.items():
            key = (sid, "")
            if key not in self.state and self._partition(key) == partition:
                assert kind.absence is not None
                cursor = first_window(kind.sensor.deployed_at, kind.absence, kind.within)
                held = self.state[key] = Held(progress=Progress(cursor=cursor))
                self._arm(key, held, kind, partition)
                touched.append(key)
        for key in self._timers_of(partition).pop(watermark):
            rule = self._rules.get(key[0])
            found = self.state.get(key)
            if rule is None or rule[3] is None or found is None or found.progress is None:
                continue
            kind, held, pending = rule[3], found, found.progress.pending
            if pending is not None and pending.due <= watermark:
                self._flush(kind, held, decisions)
            if kind.absence is not None:
                fired, skipped = absence_due(held, kind.absence, kind.within, watermark)
                for f in fired:
                    self._launch(kind, held, f, decisions)
                if skipped:
                    decisions.failures.append(skipped_windows(kind, skipped))
            self._arm(key, held, kind, partition)
            touched.append(key)
        changes = [
            _change(key, self.state[key], {}, self._rules[key[0]][0].version)
            for key in touched
            if key in self.state
        ]
        return decisions, changes

    def expire(self, watermark: datetime, partition: int = 0) -> set[StateKey]:
        """Drop what the partition's keys hold from before their window at ``watermark``;
        return the changed keys. Not written to the changelog: a replay expires by the
        same watermark."""
        changed: set[StateKey] = set()
        expiry = self._expiry_of(partition)
        for key in expiry.pop(watermark, strict=True):
            held = self.state.get(key)
            rule = self._rules.get(key[0])
            if held is None or rule is None:
                if self.state.pop(key, None) is not None:
                    changed.add(key)
                continue
            if held.trim(watermark - rule[1]):
                changed.add(key)
            oldest = held.oldest()
            if oldest is not None:
                expiry.set(key, oldest + rule[1])
            elif held.progress is None or held.progress.empty():
                del self.state[key]
                self._timers_of(partition).discard(key)
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

    def apply(self, change: StateChange, watermark: datetime | None) -> None:
        """Replay one changelog entry, keeping only what is still inside its window at
        ``watermark`` (the partition's, as of the entry).

        Filtering on the way in keeps a replay's memory bounded like the live state,
        however long the changelog has grown. An entry gathered under another definition
        of its sensor (a redeploy changed it) is not applied: its events were not
        filtered by the new one.
        """
        rule = self._rules.get(change.sensor_id)
        if rule is None:
            return  # a sensor no longer deployed
        if change.version and change.version != rule[0].version:
            return  # gathered under another definition; 0: written before versions
        key = (change.sensor_id, change.key)
        held = Held(dict(change.events), dict(change.seen), change.progress)
        if watermark is not None:
            held.trim(watermark - rule[1])
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
        partition = self._partition(key)
        oldest = held.oldest()
        if oldest is not None:
            self._expiry_of(partition).earlier(key, oldest + rule[1])
        if rule[3] is not None:
            self._arm(key, held, rule[3], partition)

    def snapshot(self, partitions: set[int]) -> dict[int, list[StateChange]]:
        """The whole state of the keys of each of ``partitions``, in one pass, as changes
        that :meth:`apply` restores: each holds every id its key remembers, not only a
        batch's."""
        states: dict[int, list[StateChange]] = {p: [] for p in partitions}
        rules = self._rules
        for key, held in self.state.items():
            rule = rules.get(key[0])
            if rule is not None and (state := states.get(self._partition(key))) is not None:
                state.append(_change(key, held, dict(held.seen), rule[0].version))
        return states

    def drop(self, keep: Callable[[StateKey], bool]) -> None:
        """Forget every key for which ``keep(key)`` is false (partitions given away)."""
        for key in [k for k in self.state if not keep(k)]:
            del self.state[key]
        for timers in [*self._expiry.values(), *self._timers.values()]:
            timers.keep(lambda k: k in self.state)


def _progress(kind: Kind | None) -> Progress | None:
    return None if kind is None else Progress()


def _change(key: StateKey, held: Held, ids: dict[str, datetime], version: int) -> StateChange:
    progress = held.progress.copy() if held.progress is not None else None
    return StateChange(key[0], key[1], dict(held.events), ids, progress, version)


def _same_sensor(a: Sensor, b: Sensor) -> bool:
    return a.deployed_at == b.deployed_at and a.trigger == b.trigger and a.flow == b.flow

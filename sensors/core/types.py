"""What the pure core takes and gives: arrivals and offers in; fires, failures and state out.

The records are msgspec Structs: :mod:`sensors.core.wire` encodes them for Kafka
directly, in C, and they cost a third of a frozen dataclass to create. None of
them can be part of a reference cycle, so the garbage collector need not track
them (gc=False).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from sensors.core.mapping import extract_parameters, unmatched
from sensors.core.sensor import Sensor
from triggers.envelope import Envelope
from triggers.errors import TriggerError
from triggers.spec import EventDependency

__all__ = [
    "PUBLISHED",
    "Arrival",
    "Decisions",
    "Failure",
    "Fire",
    "Held",
    "Offer",
    "Pending",
    "Progress",
    "Rejection",
    "RunEvent",
    "StateChange",
    "StateKey",
    "event_id",
    "event_key",
    "make_fire",
]


PUBLISHED = "tripwire://publish"
"""The source of events from tripwire's own publishers, whose ids are UUIDs."""


def event_key(source: str, id: str) -> str:
    """An event's identity, as dedupe, the store's consumed events and run names use it.

    CloudEvents makes ``source`` + ``id`` unique, not ``id`` alone, so two sources that
    reuse an id (a date, a counter) publish two events. An event of tripwire's own
    publishers is its id alone: those ids are unique, and its runs keep the names they
    had before sources counted.
    """
    return id if source == PUBLISHED else f"{source}\x1f{id}"


def event_id(key: str) -> str:
    """The id in an :func:`event_key`, as runs show it (``trigger_info``)."""
    return key.rpartition("\x1f")[2]


class Arrival(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An event as the engine received it: the envelope and the broker's timestamp."""

    envelope: Envelope
    arrived_at: datetime

    @property
    def event_time(self) -> datetime:
        return self.envelope.time or self.arrived_at

    @property
    def key(self) -> str:
        """Its identity (:func:`event_key`)."""
        envelope = self.envelope
        return event_key(envelope.source, envelope.id)


class Offer(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An event for one dependency of one stateful sensor, under one correlation key."""

    sensor_id: str
    dep: str
    key: str
    arrival: Arrival


class RunEvent(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """An event that contributed to a run, as run requests and run records show it, with
    the W3C trace context it carried (left out when none)."""

    name: str
    id: str
    source: str
    time: datetime | None
    payload: dict[str, Any]
    dependency: str
    traceparent: str | None = None
    tracestate: str | None = None


class Fire(msgspec.Struct, frozen=True, gc=False):
    """A decision to launch one run."""

    sensor: Sensor
    run_name: str
    parameters: dict[str, Any]
    events: tuple[RunEvent, ...]  # oldest first
    info: dict[str, Any] | None = None
    """How a threshold, absence or debounce fired, and under ``unmatched`` the mapped
    parameters that kept their defaults (:func:`make_fire`): the run's ``trigger_info``."""
    consumes: tuple[str, ...] = ()
    """The events (:func:`event_key`) the run is named from: the store lets one run
    consume each."""
    traceparent: str | None = None
    tracestate: str | None = None
    """The W3C trace context the run continues: its fire span's (sensors.stages.spans),
    else that of the event that completed it."""


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


class Pending(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A debounced fire waiting for its quiet period to end."""

    used: dict[str, Arrival]  # the latest fire's events: they give the parameters
    info: dict[str, Any] | None  # the latest fire's trigger info
    ids: list[str]  # every event (key) of every coalesced fire, first seen first
    fires: int  # how many fires it coalesces
    due: datetime  # it fires once the clock passes this


class Progress(msgspec.Struct, array_like=True, gc=False):
    """What a key of a threshold, absence or debounced sensor holds besides its events.

    Small, and written whole to the changelog whenever it changes.
    """

    counted: dict[str, datetime] = msgspec.field(default_factory=dict)
    """Threshold: events (:func:`event_key`) counted toward the next fire -> event time."""
    cursor: datetime | None = None
    """Absence: the start of the first window not decided yet."""
    present: list[datetime] = msgspec.field(default_factory=list)
    """Absence: starts of undecided windows in which the event happened."""
    starters: dict[str, Arrival] = msgspec.field(default_factory=dict)
    """Absence with ``after``: the events that opened a window still open, by key."""
    pending: Pending | None = None
    """Debounce: the fire waiting for a quiet period."""

    def empty(self) -> bool:
        return not (self.counted or self.cursor or self.present or self.starters or self.pending)

    def copy(self) -> Progress:
        return Progress(
            dict(self.counted), self.cursor, list(self.present), dict(self.starters), self.pending
        )


class Held(msgspec.Struct, array_like=True, gc=False):
    """The state of one sensor under one correlation key."""

    events: dict[str, Arrival] = msgspec.field(default_factory=dict)  # dep -> latest event
    seen: dict[str, datetime] = msgspec.field(default_factory=dict)  # event key -> event time
    progress: Progress | None = None

    def trim(self, horizon: datetime) -> bool:
        """Drop what is older than ``horizon`` from the window; return whether anything went."""
        events = {d: a for d, a in self.events.items() if a.event_time >= horizon}
        seen = {i: t for i, t in self.seen.items() if t >= horizon}
        changed = len(events) < len(self.events) or len(seen) < len(self.seen)
        self.events, self.seen = events, seen
        progress = self.progress
        if progress is not None and progress.counted:
            counted = {i: t for i, t in progress.counted.items() if t >= horizon}
            changed = changed or len(counted) < len(progress.counted)
            progress.counted = counted
        return changed

    def oldest(self) -> datetime | None:
        """The oldest time the window holds, or None when it holds nothing."""
        times = [*self.seen.values(), *(a.event_time for a in self.events.values())]
        if self.progress is not None:
            times += self.progress.counted.values()
        return min(times) if times else None


class StateChange(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one batch changed in one (sensor, correlation key): a changelog entry.

    ``events`` is what the key holds after the batch (at most one event per
    dependency), and ``progress`` too; ``seen`` only the ids that the batch counted.
    Expiry is not recorded: whoever replays the changelog expires by the same watermark. So
    an entry costs what the batch changed, not what the key remembers, which for a
    busy key is every event id of the last window. Entries must be replayed in the
    order of the batches that made them.
    """

    sensor_id: str
    key: str
    events: dict[str, Arrival]
    seen: dict[str, datetime]
    progress: Progress | None = None
    version: int = 0
    """The :attr:`~sensors.core.sensor.Sensor.version` it was gathered under: a replay
    applies it only while that definition is deployed."""


StateKey = tuple[str, str]  # (sensor id, correlation key)


def make_fire(
    sensor: Sensor,
    used: dict[str, Arrival],
    decisions: Decisions,
    *,
    info: dict[str, Any] | None = None,
    ids: Sequence[str] | None = None,
) -> None:
    """Map and coerce the parameters of a satisfied sensor into a Fire, or a Failure.

    The run is named from ``ids``, or else from the ids of the ``used`` events. A mapped
    parameter that kept its default because its source matched nothing in any event
    (a misspelt field) is listed in the Fire's ``info["unmatched"]``, so the run says so.
    """
    contributing = [(dep, used[dep.dep]) for dep in sensor.dependencies if dep.dep in used]
    raw: dict[str, Any] = {}
    missed: list[tuple[str, str, Envelope]] = []  # parameter, source, event
    # Declaration order: a later dependency's value wins for the same parameter. A
    # dependency that did not contribute (an OR condition) leaves its parameters to defaults.
    names = sensor.parameter_names
    for dep, arrival in contributing:
        found = extract_parameters(dep, arrival.envelope, names)
        raw.update(found)
        for param, source in unmatched(dep, found).items():
            missed.append((param, source, arrival.envelope))
    if len(contributing) > 1:
        contributing.sort(key=_oldest_first)
    try:
        parameters = sensor.schema.coerce(raw)
    except TriggerError as exc:
        if contributing:
            latest = contributing[-1][1].envelope
            name, event_id, what = latest.name, latest.id, f"event {latest.name!r} (id {latest.id})"
        else:  # an absence: no event
            name, event_id = sensor.dependencies[-1].name, (ids or ["?"])[0]
            what = f"absence of {name!r} ({event_id})"
        reason = f"{what} for flow {sensor.flow.name!r}: {exc}"
        decisions.failures.append(Failure(sensor, name, event_id, reason))
        return
    events = []
    for dep, arrival in contributing:
        e = arrival.envelope
        events.append(
            RunEvent(
                e.name, e.id, e.source, e.time, e.payload, dep.dep, e.traceparent, e.tracestate
            )
        )
    kept = _kept_defaults(missed, raw, parameters) if missed else None
    if kept:
        info = {**(info or {}), "unmatched": kept}
    consumes = tuple(ids) if ids is not None else tuple(a.key for _, a in contributing)
    run_name = sensor.run_name(consumes)
    # The trace of the event that completed it (an absence has none).
    trace = (events[-1].traceparent, events[-1].tracestate) if events else (None, None)
    decisions.fires.append(
        Fire(sensor, run_name, parameters, tuple(events), info, consumes, *trace)
    )


def _kept_defaults(
    missed: list[tuple[str, str, Envelope]], raw: dict[str, Any], parameters: dict[str, Any]
) -> list[dict[str, Any]]:
    """The mappings that matched nothing, of the parameters that no other event filled
    either and so kept their defaults, as ``trigger_info["unmatched"]`` lists them."""
    return [
        {
            "parameter": param,
            "default": parameters[param],
            "source": source,
            "event": event.name,
            "event_id": event.id,
        }
        for param, source, event in missed
        if param not in raw and param in parameters
    ]


def _oldest_first(pair: tuple[EventDependency, Arrival]) -> tuple[datetime, str]:
    return pair[1].event_time, pair[1].envelope.id

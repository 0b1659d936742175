"""The reference model: from the events that really reached the events topic, the exact
runs that must exist, by logical identity.

It is written from the trigger kinds' documented rules (docs/triggers.md), not from
the correlator, so that a bug in the correlator shows up as a difference. It holds
for the workload of :mod:`tests.nemesis.workload`, whose keys each have one way to fire
whatever order the engine reads them in. Its input is what the topic holds after the
run (with the broker's timestamps and any duplicates a retried publish made), so
what a fault did to the publishes themselves is part of the input, not a difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

WINDOW = timedelta(minutes=10)
DEBOUNCE = timedelta(seconds=2)
TICK = timedelta(seconds=5)
LANDING_SLACK = 2.0
"""Seconds a publish may take and its record still land inside the lateness the engine
allows (TRIPWIRE_ABSENCE_GRACE, 5 s), less the largest clock skew (2 s) and a second.
A debounced event that took longer may have landed after its key's quiet period was
decided, and then rightly starts a burst of its own."""


@dataclass(frozen=True)
class Event:
    """An event as the events topic holds it: ``arrived`` is the record's timestamp."""

    name: str
    id: str
    time: datetime
    arrived: datetime
    payload: dict[str, Any]
    partition: int
    offset: int
    landed_late: bool = False  # its publish waited long enough to land after the grace

    @property
    def key(self) -> str:
        return str(self.payload.get("k", ""))


@dataclass(frozen=True)
class Identity:
    """What makes a run the run it is: its flow and what it was made from (the ids of the
    events it used or counted, the tick it ran for, or the upstream run it followed)."""

    flow: str
    made_from: frozenset[str]

    def __str__(self) -> str:
        return f"{self.flow}({', '.join(sorted(self.made_from))})"


@dataclass
class Expected:
    """A run the model says must exist, with the parameters it must have."""

    identity: Identity
    parameters: dict[str, Any] = field(default_factory=dict)
    loose: bool = False
    """The identity's ids may be split among several runs (each id in exactly one), and
    only ``k`` is checked: a debounced key with an event that landed late."""


def expected_runs(
    events: Iterable[Event], ticks_from: datetime, ticks_until: datetime
) -> list[Expected]:
    """The runs of every event-triggered flow and of ``nm_tick``; ``nm_after`` follows the
    runs of ``nm_pair`` that really ended, so the checker derives it from the store."""
    by_flow: dict[str, dict[str, list[Event]]] = defaultdict(lambda: defaultdict(list))
    first: dict[str, Event] = {}
    for event in sorted(events, key=lambda e: (e.partition, e.offset)):
        if event.id in first:
            continue  # a duplicate counts once (it arrives within the window here)
        first[event.id] = event
        by_flow[_FLOWS[event.name]][event.key].append(event)
    runs: list[Expected] = []
    for flow, keys in by_flow.items():
        for key, held in keys.items():
            runs.extend(_RULES[flow](key, held))
    runs.extend(_ticks(ticks_from, ticks_until))
    return runs


def _all_of(flow: str, key: str, used: list[Event]) -> Expected:
    parameters: dict[str, Any] = {"k": key, **_DEFAULTS.get(flow, {})}
    for event in used:
        parameters |= {p: v for p, v in event.payload.items() if p != "k"}
    return Expected(Identity(flow, frozenset(e.id for e in used)), parameters)


def _spanned(events: list[Event]) -> bool:
    times = [e.time for e in events]
    return max(times) - min(times) <= WINDOW


def _pair(key: str, held: list[Event]) -> list[Expected]:
    """All of nm_a and nm_b inside the window (the workload gives a key one of each)."""
    names = {e.name for e in held}
    if names == {"nm_a", "nm_b"} and _spanned(held):
        return [_all_of("nm_pair", key, held)]
    return []


def _either(key: str, held: list[Event]) -> list[Expected]:
    """``nm_x || (nm_y && nm_z)``: x alone fires; y and z fire together."""
    names = {e.name for e in held}
    if names == {"nm_x"} or (names == {"nm_y", "nm_z"} and _spanned(held)):
        return [_all_of("nm_either", key, held)]
    return []


def _count(key: str, held: list[Event]) -> list[Expected]:
    """Threshold 3: each three distinct ids inside the window fire, named from all three
    (the workload gives a key two or three)."""
    if len(held) == 3 and _spanned(held):
        return [Expected(Identity("nm_count", frozenset(e.id for e in held)), {"k": key})]
    return []


def _steps(key: str, held: list[Event]) -> list[Expected]:
    """Sequence s1, s2, s3: fires when their event times are in that order in the window."""
    by_name = {e.name: e for e in held}
    steps = [by_name.get(f"nm_s{n}") for n in (1, 2, 3)]
    if all(steps) and _spanned(held):
        s1, s2, s3 = steps
        assert s1 and s2 and s3
        if s1.time < s2.time < s3.time:
            return [_all_of("nm_steps", key, held)]
    return []


def _settle(key: str, held: list[Event]) -> list[Expected]:
    """Debounce 2 s: the key's bursts (see :func:`_bursts`), unless one of its events may
    have landed after the lateness allowed: then only that each event is in one run."""
    if any(e.landed_late for e in held):
        ids = frozenset(e.id for e in held)
        return [Expected(Identity("nm_settle", ids), {"k": key}, loose=True)]
    return _bursts(key, held)


def _bursts(key: str, held: list[Event]) -> list[Expected]:
    """Debounce 2 s on arrival: a fire is held back until the key has had no new event for
    2 s of the broker's time; each event replaces the held fire's parameters. So the key's
    events, in the order they arrived, split where one came more than 2 s after the
    quiet period of those before it began to run out."""
    runs: list[Expected] = []
    burst: list[Event] = []
    due: datetime | None = None
    for event in held:  # one name, one partition: in the order they arrived
        if due is not None and event.arrived > due:
            runs.append(_burst(key, burst))
            burst, due = [], None
        burst.append(event)
        due = max(due or event.arrived, event.arrived + DEBOUNCE)
    if burst:
        runs.append(_burst(key, burst))
    return runs


def _burst(key: str, burst: list[Event]) -> Expected:
    return Expected(
        Identity("nm_settle", frozenset(e.id for e in burst)),
        {"k": key, "n": burst[-1].payload["n"]},
    )


def _ticks(since: datetime, until: datetime) -> list[Expected]:
    """Every 5 s tick after ``since`` and up to ``until`` (rate ticks are multiples of the
    rate since the epoch), each once (``catchup="all"``)."""
    step = int(TICK.total_seconds())
    first = (int(since.timestamp()) // step + 1) * step
    return [
        Expected(
            Identity("nm_tick", frozenset([datetime.fromtimestamp(t, since.tzinfo).isoformat()]))
        )
        for t in range(first, int(until.timestamp()) + 1, step)
    ]


_FLOWS = {
    "nm_a": "nm_pair",
    "nm_b": "nm_pair",
    "nm_x": "nm_either",
    "nm_y": "nm_either",
    "nm_z": "nm_either",
    "nm_th": "nm_count",
    "nm_s1": "nm_steps",
    "nm_s2": "nm_steps",
    "nm_s3": "nm_steps",
    "nm_burst": "nm_settle",
}
_DEFAULTS = {"nm_either": {"x": -1, "y": -1, "z": -1}}  # what an unused branch leaves
_RULES = {
    "nm_pair": _pair,
    "nm_either": _either,
    "nm_count": _count,
    "nm_steps": _steps,
    "nm_settle": _settle,
}

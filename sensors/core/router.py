"""Routing events to sensors: the stateless half of the pure core. No I/O.

:class:`Router` keeps an index from each event name to the (sensor, dependency)
pairs that wait for it, so an event costs work only for those. It drops events
from before a sensor's deployment, applies filters, computes correlation keys,
fires single-event sensors at once, and turns the rest into
:class:`~sensors.core.correlator.Offer` s for the :class:`~sensors.core.correlator.Correlator`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from sensors.core.filters import correlation_key, rejection
from sensors.core.sensor import Sensor
from sensors.core.types import Arrival, Decisions, Offer, Rejection, make_fire
from triggers.spec import EventDependency

__all__ = ["Routed", "Router"]

_HERE = ""  # the trie key of the targets whose prefix ends at a node (no char is "")


@dataclass
class Routed(Decisions):
    offers: list[Offer] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    ignored_before_deploy: int = 0


class _Target(msgspec.Struct, frozen=True, gc=False):
    """One dependency of one deployed sensor, as the router's index holds it.

    What routing reads for every event is copied out of the sensor and the
    dependency once, at deployment: with 100,000 sensors, chasing it through
    their objects on each event cost more than the routing itself.
    """

    sensor: Sensor
    dep: EventDependency
    sensor_id: str
    dep_name: str
    deployed_at: datetime
    filtered: bool
    single: bool  # the sensor's only dependency: fires without held state
    key_path: str | None  # correlate_by JSONPath of this dependency


_CACHED_NAMES = 100_000  # distinct event names whose targets are remembered


class Router:
    """Indexes sensors by event name and routes events to them. Stateless.

    Exact names are a dict. Wildcard names (``"orders.*"``) are a prefix trie, so a
    name costs one step per character, however many wildcards are deployed; and
    the targets of each name seen are remembered, so the trie is walked once per
    distinct name, not once per event.
    """

    def __init__(self, sensors: Iterable[Sensor] = ()) -> None:
        self._index: dict[str, list[_Target]] = {}
        self._trie: dict[str, Any] = {}  # char -> subtree; _HERE -> targets of that prefix
        self._targets: dict[str, list[_Target]] = {}  # event name -> every target it reaches
        self.sensors: dict[str, Sensor] = {}
        for sensor in sensors:
            self.add(sensor)

    def add(self, sensor: Sensor) -> None:
        if sensor.id in self.sensors:
            raise ValueError(f"sensor {sensor.id!r} is already deployed")
        self.sensors[sensor.id] = sensor
        correlate_by = sensor.trigger.correlate_by or {}
        for dep in sensor.dependencies:
            target = _Target(
                sensor,
                dep,
                sensor.id,
                dep.dep,
                sensor.deployed_at,
                bool(dep.filters),
                not sensor.stateful,
                correlate_by.get(dep.dep),
            )
            if dep.name.endswith("*"):
                node = self._trie
                for char in dep.name[:-1]:
                    node = node.setdefault(char, {})
                node.setdefault(_HERE, []).append(target)
            else:
                self._index.setdefault(dep.name, []).append(target)
        self._targets.clear()

    def interested(self, name: str) -> Sequence[tuple[Sensor, EventDependency]]:
        """The (sensor, dependency) pairs an event name reaches."""
        return tuple((t.sensor, t.dep) for t in self._lookup(name))

    def _lookup(self, name: str) -> list[_Target]:
        """Every target of ``name``: its exact ones, then those of each wildcard prefix."""
        found = self._targets.get(name)
        if found is not None:
            return found
        found = list(self._index.get(name, ()))
        node = self._trie
        for char in name:
            child: dict[str, Any] | None = node.get(char)
            if child is None:
                break
            found += child.get(_HERE, ())
            node = child
        if len(self._targets) >= _CACHED_NAMES:
            self._targets.clear()
        self._targets[name] = found
        return found

    def route(self, arrivals: Iterable[Arrival]) -> Routed:
        """Route a batch: fires of single-event sensors, offers for the others."""
        routed = Routed()
        offers = routed.offers
        known, lookup = self._targets, self._lookup
        for arrival in arrivals:
            name = arrival.envelope.name
            targets = known.get(name)
            if targets is None:
                targets = lookup(name)
            if not targets:
                continue
            for target in targets:
                if arrival.arrived_at < target.deployed_at:
                    routed.ignored_before_deploy += 1
                    continue
                if target.filtered:
                    reason = rejection(target.dep, arrival.envelope, arrival.event_time)
                    if reason is not None:
                        routed.rejections.append(
                            Rejection(
                                target.sensor_id, target.dep_name, arrival.envelope.id, reason
                            )
                        )
                        continue
                if target.single:
                    # Nothing to hold: fire at once. A redelivered event maps to the same
                    # run name, which the run store accepts once, so no id memory is needed.
                    make_fire(target.sensor, {target.dep_name: arrival}, routed)
                    continue
                key = ""
                if target.key_path is not None:
                    found = correlation_key(target.key_path, arrival.envelope)
                    if found is None:
                        routed.rejections.append(
                            Rejection(
                                target.sensor_id,
                                target.dep_name,
                                arrival.envelope.id,
                                f"correlation key {target.key_path} is missing",
                            )
                        )
                        continue
                    key = found
                offers.append(Offer(target.sensor_id, target.dep_name, key, arrival))
        return routed

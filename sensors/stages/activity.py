"""What the sensor stage saw since its last report, for the sensor page and the event-flow
graph: events by (source, name) and offers by (sensor, dependency), per minute, and marks.

The sensor stage routes some 10^5 events a second, so this counts on its hot path at the
cost of one tuple and one dict increment per event, in C (``Counter`` over ``attrgetter``):

- Events are counted as they come, by (CloudEvent source, event name).
- Offers are not counted one by one: an event of a name is offered to every dependency
  that name reaches (the router's index), unless that dependency filtered it out (its
  rejections are counted, by far the fewer), or it came before the sensor's deployment.
  So :meth:`Activity.settle` derives the offers from the counts of names once per report,
  and whenever the stage deploys a new router, with the router the events were routed by.
  A batch in which events came before a deployment is counted offer by offer instead.
- The marks of a batch are the last event offered to, or filtered out by, each (sensor,
  dependency) among the batch's last :data:`_MARKED_PER_BATCH` offers (and fires, and
  rejections): all of a small batch, a sample of a large one.

Measured with bench/sensors.py on 2 cores (see the change's description).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter

from sensors.core.router import Routed, Router
from sensors.core.types import Arrival, Offer, Rejection
from sensors.runs.activity import FILTERED, OFFERED, ActivityMark, MinuteCounts, minute_of

__all__ = ["MARKS_PER_REPORT", "Activity"]

MARKS_PER_REPORT = 200  # the newest marks a report writes; older ones since the last are lost
_MARKED_PER_BATCH = 256  # a batch's last offers, fires and rejections that it marks

_SOURCE_AND_NAME = attrgetter("envelope.source", "envelope.name")
_SENSOR_AND_DEP = attrgetter("sensor_id", "dep")

Buckets = dict[datetime, Counter[tuple[str, str]]]
"""Counts by minute, then by (source, event name) or (sensor id, dependency)."""


class Activity:
    """Counts and marks of the batches the sensor stage routed since the last report."""

    def __init__(self) -> None:
        self.events: Buckets = {}
        self.offers: Buckets = {}  # settled: derived, or counted offer by offer
        self._not_derived: Buckets = {}  # events whose offers are in ``offers`` already
        self._rejected: Buckets = {}  # rejections of the events not settled yet
        self._router: Router | None = None  # what the events not settled were routed by
        # Per batch: when, and the last offer, fired event's id or rejection per key.
        self._batches: deque[tuple[datetime, dict[tuple[str, str], Offer | str | Rejection]]]
        self._batches = deque()
        self._held = 0  # keys in _batches

    def __bool__(self) -> bool:
        return bool(self.events or self._batches)

    def add(
        self, arrivals: Sequence[Arrival], routed: Routed, router: Router, at: datetime
    ) -> None:
        """Count one batch: its ``arrivals``, and what ``router`` made of them at ``at``."""
        if router is not self._router:
            self.settle()
            self._router = router
        minute = minute_of(at)
        _bucket(self.events, minute).update(map(_SOURCE_AND_NAME, arrivals))
        if routed.ignored_before_deploy:
            self._count_offers(minute, arrivals, routed)
        elif routed.rejections:
            _bucket(self._rejected, minute).update(map(_SENSOR_AND_DEP, routed.rejections))
        self._mark(routed, at)

    def _count_offers(self, minute: datetime, arrivals: Sequence[Arrival], routed: Routed) -> None:
        """Count a batch's offers one by one, and leave its events out of what is derived."""
        _bucket(self._not_derived, minute).update(map(_SOURCE_AND_NAME, arrivals))
        offers = _bucket(self.offers, minute)
        offers.update(map(_SENSOR_AND_DEP, routed.offers))
        offers.update((f.sensor.id, e.dependency) for f in routed.fires for e in f.events)
        offers.update(
            (f.sensor.id, f.sensor.dependencies[0].dep)
            for f in routed.failures
            if f.sensor.dependencies
        )

    def settle(self) -> None:
        """Derive the offers of the events counted since the last call, with the router
        they were routed by: each event of a name is offered to each dependency the name
        reaches, but for those that filtered it out."""
        router = self._router
        if router is None:
            return
        for minute, events in self.events.items():
            names: Counter[str] = Counter()
            for (_, name), n in (events - self._not_derived.get(minute, Counter())).items():
                names[name] += n
            offers = _bucket(self.offers, minute)
            for name, n in names.items():
                for sensor, dep in router.interested(name):
                    offers[(sensor.id, dep.dep)] += n
            offers.subtract(self._rejected.get(minute, Counter()))
            self.offers[minute] = +offers  # without the dependencies that got none
            self._not_derived[minute] = Counter(events)
        self._rejected = {}

    def _mark(self, routed: Routed, at: datetime) -> None:
        last: dict[tuple[str, str], Offer | str | Rejection] = {}
        offers = routed.offers[-_MARKED_PER_BATCH:]
        if offers:
            last.update(zip(map(_SENSOR_AND_DEP, offers), offers, strict=True))
        if routed.fires or routed.failures:
            # A stateless sensor's event is offered to its one dependency and fires (or fails
            # to) at once.
            last.update(
                ((f.sensor.id, e.dependency), e.id)
                for f in routed.fires[-_MARKED_PER_BATCH:]
                for e in f.events
            )
            last.update(
                ((f.sensor.id, f.sensor.dependencies[0].dep), f.event_id)
                for f in routed.failures[-_MARKED_PER_BATCH:]
                if f.sensor.dependencies
            )
        if last:
            self._keep(at, last)
        rejections = routed.rejections[-_MARKED_PER_BATCH:]
        if rejections:
            self._keep(at, dict(zip(map(_SENSOR_AND_DEP, rejections), rejections, strict=True)))

    def _keep(self, at: datetime, last: dict[tuple[str, str], Offer | str | Rejection]) -> None:
        """Keep a batch's last events per key, and drop the oldest batches that the newer
        ones leave out of the next report's marks."""
        batches = self._batches
        batches.append((at, last))
        self._held += len(last)
        while self._held - len(batches[0][1]) >= MARKS_PER_REPORT:
            self._held -= len(batches.popleft()[1])

    def marks(self) -> list[ActivityMark]:
        """The newest :data:`MARKS_PER_REPORT` marks, oldest first."""
        found: list[ActivityMark] = []
        for at, last in reversed(self._batches):
            for (sensor_id, dep), what in reversed(last.items()):
                if len(found) == MARKS_PER_REPORT:
                    break
                if isinstance(what, Rejection):
                    found.append(
                        ActivityMark(sensor_id, dep, FILTERED, what.event_id, what.reason, at)
                    )
                else:
                    event = what if isinstance(what, str) else what.arrival.envelope.id
                    found.append(ActivityMark(sensor_id, dep, OFFERED, event, None, at))
        found.reverse()
        return found

    def rows(self) -> int:
        """About how many counts writing it takes: one per event name, and as many again
        for the dependencies offered to."""
        return 2 * sum(map(len, self.events.values()))

    def counted_before(self, before: datetime | None) -> bool:
        """Whether it counted events in a minute before ``before`` (in any, if None)."""
        return any(before is None or m < before for m in self.events)

    def counts(self, before: datetime | None = None) -> tuple[MinuteCounts, MinuteCounts]:
        """The counts of events and of offers (:meth:`settle` first) of the minutes before
        ``before`` (all of them if None), as the store takes them: by (minute, and the two
        names)."""
        return _flat(self.events, before), _flat(self.offers, before)

    def written(self, before: datetime | None = None) -> None:
        """Drop the counts of the minutes before ``before`` (all if None) and the marks:
        they are in the store. :meth:`settle` first."""
        for buckets in (self.events, self.offers, self._not_derived):
            for minute in [m for m in buckets if before is None or m < before]:
                del buckets[minute]
        self._batches.clear()
        self._held = 0

    def forget(self, before: datetime) -> None:
        """Drop the counts of minutes before ``before``'s: the store would delete them."""
        minute = minute_of(before)
        for buckets in (self.events, self.offers, self._not_derived, self._rejected):
            for old in [m for m in buckets if m < minute]:
                del buckets[old]


def _flat(buckets: Buckets, before: datetime | None) -> MinuteCounts:
    return {
        (m, a, b): n
        for m, counts in buckets.items()
        if before is None or m < before
        for (a, b), n in counts.items()
    }


def _bucket(buckets: Buckets, minute: datetime) -> Counter[tuple[str, str]]:
    found = buckets.get(minute)
    if found is None:
        found = buckets[minute] = Counter()
    return found

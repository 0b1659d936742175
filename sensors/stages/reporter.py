"""Workers' reports for `tripwire sensors status`, the sensor page and the event-flow graph:
held events, filter counts, and what the sensor stage saw (:class:`Activity`).

Best effort and rate-limited: a report that fails is logged and retried with
the next one, and never holds up the stages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sensors.core.correlator import Correlator
from sensors.core.router import Routed, Router
from sensors.core.trigger_kinds import next_absence_deadline
from sensors.core.types import Arrival, Rejection, StateKey
from sensors.runs.activity import KEPT, add_activity, minute_of, prune_activity
from sensors.runs.models import FilterCount, Hold, KeyProgress
from sensors.runs.outages import log_failure
from sensors.runs.status import add_filter_counts, replace_holds, replace_progress
from sensors.runs.store import RunStore
from sensors.stages.activity import Activity
from triggers.settings import Settings

__all__ = ["StatusReporter", "count_filtered", "key_progress"]

log = logging.getLogger(__name__)

_SMALL_REPORT = 200  # counts written at every report; more wait for their minute to end
_PRUNE_EVERY = 60.0  # seconds between deletes of what is older than KEPT


class StatusReporter:
    """Collects what changed and writes it to the store every ``sensor_status_interval``."""

    def __init__(self, settings: Settings, store: RunStore) -> None:
        self._settings = settings
        self._store = store
        self._interval = settings.sensor_status_interval
        self._dirty: set[StateKey] = set()
        self._filtered: dict[tuple[str, str], FilterCount] = {}
        self._activity = Activity()
        self._marked: set[str] = set()  # sensors given marks since the last prune
        self._pruned: float | None = None  # monotonic time of the last prune; None: never
        self._last = 0.0

    @property
    def enabled(self) -> bool:
        return self._interval > 0

    def holds_changed(self, keys: Iterable[StateKey]) -> None:
        if self.enabled:
            self._dirty.update(keys)

    def filtered(self, rejections: Iterable[Rejection], at: datetime) -> None:
        if self.enabled:
            count_filtered(self._filtered, rejections, at)

    def routed(
        self, arrivals: Sequence[Arrival], routed: Routed, router: Router, at: datetime
    ) -> None:
        """Count what the sensor stage read in one batch, and what ``router`` made of it at
        ``at`` (:class:`~sensors.stages.activity.Activity`)."""
        if self.enabled:
            self._activity.add(arrivals, routed, router, at)

    async def flush(self, correlator: Correlator | None = None, *, force: bool = False) -> None:
        """Write what changed since the last report, if the interval has passed."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self._interval):
            return
        self._last = now
        project, domain = self._settings.project, self._settings.domain
        try:
            await self._write_activity(project, domain, now)
        except Exception:
            log_failure(log, "could not report what the sensor stage saw; will try again")
        try:
            if self._filtered:
                await add_filter_counts(self._store, project, domain, self._filtered.values())
                self._filtered = {}
            if self._dirty and correlator is not None:
                holds = _holds(correlator, self._dirty)
                await replace_holds(self._store, project, domain, holds)
                progress = {
                    key: key_progress(correlator, key)
                    for key in self._dirty
                    if _may_progress(correlator, key)
                }
                await replace_progress(self._store, project, domain, progress)
                self._dirty = set()
        except Exception:
            log_failure(log, "could not report sensor status; will try again")

    async def _write_activity(self, project: str, domain: str, now: float) -> None:
        """Add what the sensor stage saw to the store: its marks, and its counts. A few
        counts are written at every report; many (they grow with the event names and
        dependencies seen, not with the events) once per minute that has ended, each once.
        Once a minute, delete what the sensor page and the graph no longer show
        (:data:`sensors.runs.activity.KEPT`), and all but the newest marks of the sensors
        marked meanwhile."""
        activity = self._activity
        at = datetime.now(UTC)
        kept_since = at - KEPT
        activity.forget(kept_since)  # bounded while the store is down
        if activity:
            busy = activity.rows() > _SMALL_REPORT
            before = minute_of(at) if busy else None
            if activity.counted_before(before):
                activity.settle()
            events, offers = activity.counts(before)
            marks = activity.marks()
            if events or offers or marks:
                await add_activity(
                    self._store, project, domain, events=events, offers=offers, marks=marks
                )
                activity.written(before)
                self._marked.update(m.sensor_id for m in marks)
                if self._pruned is None:
                    self._pruned = now  # this worker counts: prune from now on
        if self._pruned is not None and now - self._pruned >= _PRUNE_EVERY:
            await prune_activity(self._store, project, domain, kept_since, sorted(self._marked))
            self._marked = set()
            self._pruned = now


def count_filtered(
    counts: dict[tuple[str, str], FilterCount], rejections: Iterable[Rejection], at: datetime
) -> None:
    """Add ``rejections`` to ``counts``, per (sensor, dependency), keeping the last reason."""
    for r in rejections:
        entry = counts.get((r.sensor_id, r.dep))
        if entry is None:
            counts[(r.sensor_id, r.dep)] = FilterCount(
                sensor_id=r.sensor_id,
                dep=r.dep,
                count=1,
                last_reason=r.reason,
                last_event_id=r.event_id,
                last_at=at,
            )
        else:
            entry.count += 1
            entry.last_reason, entry.last_event_id, entry.last_at = r.reason, r.event_id, at


def key_progress(correlator: Correlator, key: StateKey) -> KeyProgress | None:
    """Where a key of a threshold, sequence, absence or debounce stands; None for others."""
    sensor = correlator.sensors.get(key[0])
    held = correlator.state.get(key)
    if sensor is None or held is None or held.progress is None:
        return None
    trigger, progress = sensor.trigger, held.progress
    found = KeyProgress(sensor_id=key[0], key=key[1])
    if trigger.threshold is not None:
        found.count = len(progress.counted)
    if trigger.sequence:
        steps = [d.dep for d in sensor.dependencies]
        found.position = next((i for i, dep in enumerate(steps) if dep not in held.events), 0)
        if all(dep in held.events for dep in steps):
            found.position = len(steps)
    if trigger.absence is not None:
        found.deadline = next_absence_deadline(held, trigger.absence, trigger.within)
    if progress.pending is not None:
        found.debounce_until = progress.pending.due
        found.coalesced = progress.pending.fires
    return found


def _may_progress(correlator: Correlator, key: StateKey) -> bool:
    """False for a key of a plain all-of sensor, which never has progress to report."""
    sensor = correlator.sensors.get(key[0])
    return sensor is None or sensor.trigger.kind != "all" or sensor.trigger.debounce is not None


def _holds(correlator: Correlator, keys: Iterable[StateKey]) -> dict[StateKey, list[Hold]]:
    result: dict[StateKey, list[Hold]] = {}
    for key in keys:
        sensor = correlator.sensors.get(key[0])
        held = correlator.state.get(key)
        if sensor is None or held is None:
            result[key] = []
            continue
        within = sensor.trigger.within
        result[key] = [
            Hold(
                sensor_id=key[0],
                key=key[1],
                dep=dep,
                event_id=a.envelope.id,
                event_time=a.event_time,
                expires_at=a.event_time + within,
            )
            for dep, a in held.events.items()
        ]
    return result

"""How each kind of trigger absorbs an event and what the clock decides for it. Pure.

The :class:`~sensors.core.correlator.Correlator` keeps the state per (sensor,
correlation key), drops repeated event ids, and calls these with the key's
:class:`~sensors.core.types.Held`. Each returns what fires, if anything; the
correlator then launches it, or holds it back for ``debounce``.

- **threshold**: every distinct event id counts; when ``threshold`` of them fall
  inside one window of ``within`` (event time), the sensor fires with the
  parameters of the event that reached the count, and counts again from zero.
- **sequence**: the latest event of each step is held, as for all-of. An event
  for step *i* that happened before an event already held for an earlier step
  can never follow it and is ignored; one that happened after events held for
  later steps drops them, since they did not follow it: the sequence restarts
  from it. So the held steps are always in order, and the sensor fires once
  every step is held inside one window. Order is event time, not arrival, so
  transport reordering between topics does not break a sequence.
- **absence**: see :class:`~triggers.spec.AbsenceSpec`. The clock decides, through
  a *watermark* (the time up to which every event is known to have arrived), so a
  restart never skips a window nor fires one twice (the run name is the window's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sensors.core.schedule import previous_ticks, wall_window
from sensors.core.sensor import Sensor
from sensors.core.types import Arrival, Failure, Held, Progress, event_id
from triggers.conditions import Condition
from triggers.spec import AbsenceSpec, ScheduleSpec

__all__ = [
    "MAX_ABSENT_WINDOWS",
    "Fired",
    "Kind",
    "skipped_windows",
    "absence_event",
    "absence_due",
    "first_window",
    "next_absence_deadline",
    "sequence_event",
    "take_all_of",
    "threshold_event",
]

MAX_ABSENT_WINDOWS = 100
"""Empty windows fired at once after an outage; older ones are reported as skipped."""

Fired = tuple[dict[str, Arrival], dict[str, Any] | None, list[str] | None]
"""What fires: the events that give the parameters, the trigger info, the events
(:func:`~sensors.core.types.event_key`) that name the run (None: the events')."""


@dataclass(frozen=True, slots=True)
class Kind:
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
    def of(cls, sensor: Sensor) -> Kind | None:
        t = sensor.trigger
        if t.kind == "all" and t.debounce is None:
            return None  # the fast path
        steps = {d.dep: i for i, d in enumerate(t.dependencies)}
        return cls(
            sensor, t.within, t.condition(), t.kind, t.debounce, t.threshold or 0, steps, t.absence
        )


def threshold_event(
    progress: Progress, dep: str, arrival: Arrival, threshold: int, within: timedelta
) -> Fired | None:
    """Count an event; fire when ``threshold`` counted events fit in one window."""
    counted = progress.counted
    counted[arrival.key] = arrival.event_time
    if len(counted) < threshold:
        return None
    newest = max(counted.values())
    live = {i: t for i, t in counted.items() if t >= newest - within}
    if len(live) < threshold:
        progress.counted = live
        return None
    progress.counted = {}
    keys = sorted(live, key=live.__getitem__)
    shown = [event_id(k) for k in keys]
    info = {"kind": "threshold", "threshold": threshold, "count": len(keys), "event_ids": shown}
    return {dep: arrival}, info, keys


def sequence_event(
    held: Held, dep: str, arrival: Arrival, steps: dict[str, int], within: timedelta
) -> Fired | None:
    """Hold an event for its step, keeping the held steps in order; fire when all are."""
    events, step, at = held.events, steps[dep], arrival.event_time
    current = events.get(dep)
    if current is not None and current.event_time >= at:
        return None  # latest wins: a newer event holds this step
    if any(steps[d] < step and a.event_time > at for d, a in events.items()):
        return None  # it happened before an earlier step's event: it cannot follow it
    for later in [d for d, a in events.items() if steps[d] > step and a.event_time < at]:
        del events[later]  # they happened before it: the sequence restarts here
    events[dep] = arrival
    if len(events) < len(steps):
        return None
    newest = max(a.event_time for a in events.values())
    if any(a.event_time < newest - within for a in events.values()):
        return None  # not inside one window; expiry drops the old steps
    used = dict(sorted(events.items(), key=lambda item: steps[item[0]]))
    events.clear()
    return used, None, None


def take_all_of(
    events: dict[str, Arrival],
    condition: Condition,
    within: timedelta,
    reset: ScheduleSpec | None = None,
) -> dict[str, Arrival] | None:
    """Consume and return the held events that satisfy ``condition`` inside one window.

    With ``reset``, the window also starts no earlier than the latest tick of that schedule
    at or before the newest event: what came before a reset no longer counts.
    """
    newest = max(a.event_time for a in events.values())
    start = newest - within
    if reset is not None:
        start = max([start, *previous_ticks(reset, until=newest, after=start, limit=1)])
    live = {d: a for d, a in events.items() if a.event_time >= start}
    if not condition.holds(live.keys()):
        return None
    for dep in live:
        del events[dep]
    return live


def first_window(deployed_at: datetime, spec: AbsenceSpec, within: timedelta) -> datetime:
    """The first wall-clock window an absence sensor decides: the first one that starts
    once it is deployed (the one under way saw events before the sensor existed)."""
    start, end = wall_window(deployed_at, within, spec.tz)
    return start if start == deployed_at else end


def absence_event(
    held: Held, dep: str, arrival: Arrival, spec: AbsenceSpec, within: timedelta
) -> None:
    """Note an event of an absence sensor: the expected one, or one that opens a window."""
    progress = held.progress
    assert progress is not None
    at = arrival.event_time
    if spec.after is None:
        held.events[dep] = _latest(held.events.get(dep), arrival)
        start, _ = wall_window(at, within, spec.tz)
        cursor = progress.cursor
        if cursor is not None and start >= cursor and start not in progress.present:
            progress.present = sorted([*progress.present, start])
        return
    if dep == spec.after:
        expected = held.events.get(spec.dep)  # it may have arrived first, from another topic
        if expected is None or not at <= expected.event_time <= at + within:
            progress.starters[arrival.key] = arrival
        return
    held.events[dep] = _latest(held.events.get(dep), arrival)
    progress.starters = {
        i: s
        for i, s in progress.starters.items()
        if not s.event_time <= at <= s.event_time + within
    }


def absence_due(
    held: Held, spec: AbsenceSpec, within: timedelta, watermark: datetime
) -> tuple[list[Fired], int]:
    """The absences decided up to ``watermark``, oldest first, and how many empty windows
    were too old to fire (beyond :data:`MAX_ABSENT_WINDOWS`)."""
    progress = held.progress
    assert progress is not None
    fired: list[Fired] = []
    if spec.after is not None:
        for key, starter in sorted(progress.starters.items(), key=lambda s: s[1].event_time):
            deadline = starter.event_time + within
            if deadline <= watermark:
                del progress.starters[key]
                info = _window_info(starter.event_time, deadline)
                info["after_event_id"] = starter.envelope.id
                fired.append(({spec.after: starter}, info, [key]))
        return fired, 0
    cursor, skipped = progress.cursor, 0
    assert cursor is not None
    behind = (watermark - cursor) // within
    if behind > MAX_ABSENT_WINDOWS:  # an outage: leave the oldest windows out
        start, _ = wall_window(watermark - MAX_ABSENT_WINDOWS * within, within, spec.tz)
        present = sum(1 for s in progress.present if s < start)
        skipped = (start - cursor) // within - present  # approximate across clock changes
        cursor = start
    while True:
        start, end = wall_window(cursor, within, spec.tz)
        end = max(end, cursor + timedelta(seconds=1))  # never stand still
        if end > watermark:
            break
        if start not in progress.present and start < end:
            fired.append(({}, _window_info(start, end), [f"window:{start.isoformat()}"]))
        cursor = end
    progress.cursor = cursor
    progress.present = [s for s in progress.present if s >= cursor]
    return fired, skipped


def next_absence_deadline(held: Held, spec: AbsenceSpec, within: timedelta) -> datetime | None:
    """When the watermark must pass for the next absence decision of this key."""
    progress = held.progress
    if progress is None:
        return None
    if spec.after is not None:
        times = [s.event_time for s in progress.starters.values()]
        return min(times) + within if times else None
    if progress.cursor is None:
        return None
    return wall_window(progress.cursor, within, spec.tz)[1]


def _window_info(start: datetime, end: datetime) -> dict[str, Any]:
    return {"kind": "absence", "window_start": start.isoformat(), "window_end": end.isoformat()}


def _latest(current: Arrival | None, arrival: Arrival) -> Arrival:
    if current is None or current.event_time <= arrival.event_time:
        return arrival
    return current


def skipped_windows(kind: Kind, count: int) -> Failure:
    """The failure that reports empty windows too old to fire (an outage)."""
    dep = kind.sensor.dependencies[-1]
    reason = (
        f"skipped about {count} window(s) without {dep.name!r} from while no worker ran the "
        f"sensor; only the last {MAX_ABSENT_WINDOWS} fire"
    )
    return Failure(kind.sensor, dep.name, f"skipped:{count}", reason)

"""Schedule maths, pure: which ticks are due, and which of them to fire.

No I/O and no clock of its own: callers pass ``now``. The scheduler
(:mod:`sensors.stages.scheduler`) keeps, per scheduled trigger, a cursor (the newest
tick already decided) and asks :func:`plan` what to do with the ticks after it.

A tick seen within ``grace`` of its time is on time and always fires. Older
ones were missed (no worker ran, or none owned the schedule): the trigger's
``catchup`` decides which of them fire. ``grace`` is at most one period of the
schedule, so a per-second schedule does not treat ten seconds of downtime as
on time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from triggers.spec import ScheduleSpec

__all__ = ["Plan", "next_tick", "plan", "previous_ticks", "tick_run_name", "wall_window"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WALL_EPOCH = datetime(1970, 1, 1)
_COUNT_LIMIT = 10_000  # missed cron ticks counted one by one; beyond this, "at least"


def next_tick(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first tick strictly after ``after``, in UTC."""
    if spec.rate is not None:
        step = spec.rate.total_seconds()
        n = int((after - _EPOCH).total_seconds() // step) + 1
        return _EPOCH + timedelta(seconds=n * step)
    assert spec.cron is not None  # a spec has a rate or a cron
    zone = ZoneInfo(spec.tz)
    it = croniter(spec.cron, _wall(after, zone))
    while (tick := _instant(it.get_next(datetime), zone)) <= after:
        pass  # a wall time that maps to an instant at or before ``after`` (DST)
    return tick


def previous_ticks(
    spec: ScheduleSpec, until: datetime, after: datetime, limit: int
) -> list[datetime]:
    """Ticks in ``(after, until]``, newest first, at most ``limit`` of them."""
    ticks: list[datetime] = []
    if spec.rate is not None:
        step = spec.rate.total_seconds()
        n = int((until - _EPOCH).total_seconds() // step)
        while len(ticks) < limit:
            tick = _EPOCH + timedelta(seconds=n * step)
            if tick <= after:
                break
            ticks.append(tick)
            n -= 1
        return ticks
    assert spec.cron is not None
    zone = ZoneInfo(spec.tz)
    # A tick equal to ``until`` counts: step back from just after it.
    it = croniter(spec.cron, _wall(until + timedelta(microseconds=1), zone))
    while len(ticks) < limit:
        tick = _instant(it.get_prev(datetime), zone)
        if tick <= after:
            break
        if tick <= until and (not ticks or tick < ticks[-1]):
            ticks.append(tick)  # two wall times can be one instant when clocks jump
    return ticks


def wall_window(instant: datetime, length: timedelta, tz: str) -> tuple[datetime, datetime]:
    """The window of ``length`` that holds ``instant``, as UTC instants ``[start, end)``.

    Windows are aligned on the wall clock of ``tz``: they start at multiples of
    ``length`` since 1970-01-01 00:00 local time, so a day is a calendar day there,
    23 or 25 hours long when clocks change. A window that daylight saving skips is
    empty (``start == end``).
    """
    zone = ZoneInfo(tz)
    wall = _wall(instant, zone)
    start = _WALL_EPOCH + (wall - _WALL_EPOCH) // length * length
    return _instant(start, zone), _instant(start + length, zone)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """``instant`` as naive wall-clock time in ``zone``.

    Cron is about wall-clock times, and croniter steps through aware datetimes
    wrongly across daylight saving changes (it fires at 03:30 the day after
    clocks go back), but through naive ones correctly.
    """
    return instant.astimezone(zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in ``zone`` as a UTC instant: a repeated time (clocks go
    back) is its first occurrence; a skipped one (clocks go forward) is the moment
    the clocks jump past it."""
    return wall.replace(tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Plan:
    """What to do now: fire ``fire`` (oldest first) and move the cursor to ``cursor``."""

    fire: tuple[datetime, ...]
    cursor: datetime
    skipped: int
    """Late ticks that do not fire (catchup 'latest' or 'none', or beyond max_catchup)."""


def plan(spec: ScheduleSpec, *, cursor: datetime, now: datetime, grace: timedelta) -> Plan | None:
    """The ticks after ``cursor`` up to ``now`` that fire; None when none is due."""
    due = previous_ticks(spec, now, cursor, spec.max_catchup + 1)
    if not due:
        return None
    newest = due[0]
    grace = min(grace, next_tick(spec, newest) - newest)
    on_time = [t for t in due if now - t <= grace]
    late = [t for t in due if now - t > grace]  # newest first
    chosen = {"all": late[: spec.max_catchup], "latest": late[:1], "none": []}[spec.catchup]
    fire = tuple(sorted([*on_time, *chosen]))
    # More ticks may be due than we listed (we list at most max_catchup + 1): count them.
    total = len(due) if len(due) <= spec.max_catchup else _count(spec, cursor, now)
    return Plan(fire=fire, cursor=newest, skipped=total - len(fire))


def _count(spec: ScheduleSpec, after: datetime, until: datetime) -> int:
    """How many ticks fall in ``(after, until]``: exact for rates, bounded for cron."""
    if spec.rate is not None:
        step = spec.rate.total_seconds()
        return int((until - _EPOCH).total_seconds() // step) - int(
            (after - _EPOCH).total_seconds() // step
        )
    return len(previous_ticks(spec, until, after, _COUNT_LIMIT))


def tick_run_name(
    *,
    project: str,
    domain: str,
    flow: str,
    trigger: str,
    revision: int,
    tick: datetime,
    prefix: str,
) -> str:
    """The run name of one tick: the same for every worker, restart and replay.

    A hex hash of (project, domain, flow, trigger, revision, tick) after the flow's
    slug, so the run store's unique key turns a second fire of a tick into a no-op.
    """
    material = "\x1f".join(
        [project, domain, flow, trigger, str(revision), tick.astimezone(UTC).isoformat()]
    )
    return f"{prefix}-{hashlib.sha256(material.encode()).hexdigest()[:20]}"

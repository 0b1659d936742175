"""One sensor's page (``/sensors/{id}``): its last hour on a timeline.

Server-rendered, no script: each dependency is a lane of positioned marks (events offered,
events filtered out with the reason), bars of events offered per minute, and bars for the
events it holds, to when they leave the window; then a lane of fires, linked to their runs,
and trigger failures. The axis runs from an hour ago to now and, when something is due
later (a held event's expiry, an absence's deadline, a debounced fire, the next tick), on
into the future, up to an hour ahead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sensors.api.web import page_auth, templates
from sensors.queries.sensor_page import SensorPage, UnknownSensor, sensor_page

__all__ = ["axis", "layout", "router", "time_left"]

router = APIRouter(include_in_schema=False)

_AHEAD = timedelta(hours=1)  # how far into the future the axis goes, at most
_MARGIN = timedelta(minutes=2)  # and at least
_AXIS_EVERY = timedelta(minutes=10)


@router.get("/sensors/{sensor_id:path}", response_class=HTMLResponse)
async def sensor(request: Request, sensor_id: str) -> Response:
    state = page_auth(request)
    if isinstance(state, RedirectResponse):
        return state
    s = state.settings
    now = datetime.now(UTC)
    page = await sensor_page(
        state.store, project=s.project, domain=s.domain, sensor_id=sensor_id, now=now
    )
    if isinstance(page, UnknownSensor):
        return templates.TemplateResponse(
            request, "sensor.html", {"unknown": page, "quote": quote}, status_code=404
        )
    return templates.TemplateResponse(
        request,
        "sensor.html",
        {"page": page, "s": page.status.sensor, "view": layout(page), "quote": quote},
    )


def time_left(until: datetime, now: datetime) -> str:
    """``in 59m 58s``, ``in 3h 2m``, ``in 2d 4h``; ``now`` once it is past."""
    seconds = int((until - now).total_seconds())
    if seconds <= 0:
        return "now"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"in {days}d {hours}h"
    if hours:
        return f"in {hours}h {minutes}m"
    if minutes:
        return f"in {minutes}m {secs}s"
    return f"in {secs}s"


def _due(page: SensorPage) -> list[datetime]:
    """What falls due after now: expiries, deadlines, debounced fires, the next tick."""
    status = page.status
    due = [h.expires_at for lane in page.lanes for h in lane.holds]
    due += [p.deadline for p in status.progress if p.deadline]
    due += [p.debounce_until for p in status.progress if p.debounce_until]
    if status.next_tick:
        due.append(status.next_tick)
    return [d for d in due if d > page.now]


def axis(page: SensorPage) -> tuple[datetime, datetime]:
    """The timeline's span: an hour ago to a moment after now (so that a mark of now shows
    whole), or on to what falls due (an hour at most)."""
    due = _due(page)
    ahead = min(max(due) - page.now, _AHEAD) if due else timedelta(0)
    return page.since, page.now + max(ahead, _MARGIN)


def layout(page: SensorPage) -> dict[str, Any]:
    """Where everything of ``page`` goes on its timeline, in percent of its width."""
    start, end = axis(page)
    span = (end - start).total_seconds()
    now = page.now

    def at(when: datetime) -> float:
        return round(min(max((when - start).total_seconds() / span, 0.0), 1.0) * 100, 2)

    def when(value: datetime) -> str:
        return value.isoformat(timespec="seconds")

    lanes = []
    for lane in page.lanes:
        peak = max(lane.per_minute.values(), default=0)
        lanes.append(
            {
                "lane": lane,
                "minutes": [
                    {
                        "left": at(minute),
                        "width": round(6000 / span, 2),
                        "height": round(100 * n / peak),
                        "title": f"{n} offered in the minute from {when(minute)}",
                    }
                    for minute, n in sorted(lane.per_minute.items())
                    if minute + timedelta(minutes=1) > start
                ],
                "marks": [
                    {
                        "left": at(m.at),
                        "kind": m.kind,
                        "mark": m,
                        "title": f"event {m.event_id} offered at {when(m.at)}"
                        if m.kind == "offered"
                        else f"event {m.event_id} filtered out at {when(m.at)}: {m.reason}",
                    }
                    for m in lane.marks
                ],
                "holds": [
                    {
                        "left": at(h.event_time),
                        "width": max(at(h.expires_at) - at(h.event_time), 0.3),
                        "hold": h,
                        "left_text": f"expires {time_left(h.expires_at, now)}",
                        "title": f"holds event {h.event_id}"
                        + (f" for key {h.key}" if h.key else "")
                        + f" since {when(h.event_time)}; it leaves the window at "
                        f"{when(h.expires_at)}",
                    }
                    for h in lane.holds
                ],
            }
        )
    fires = [
        {
            "left": at(run.created_at),
            "run": run,
            "href": "/runs/" + "/".join(quote(p, safe="") for p in run.key),
            "title": f"fired run {run.name} at {when(run.created_at)} ({run.phase.value})"
            + (f", tick {when(run.scheduled_at)}" if run.scheduled_at else ""),
        }
        for run in page.fires
    ]
    failures = [
        {
            "left": at(f.created_at),
            "failure": f,
            "title": f"no run for event {f.event_name} (id {f.event_id}) at "
            f"{when(f.created_at)}: {f.reason}",
        }
        for f in page.failures
    ]
    due = []
    for p in page.status.progress:
        key = f" (key {p.key})" if p.key else ""
        if p.deadline and p.deadline > now:
            due.append((p.deadline, "deadline", f"absence fires {time_left(p.deadline, now)}{key}"))
        if p.debounce_until and p.debounce_until > now:
            text = f"debounced fire launches {time_left(p.debounce_until, now)}{key}"
            due.append((p.debounce_until, "debounce", text))
    if page.status.next_tick:
        tick = page.status.next_tick
        due.append((tick, "tick", f"next tick {time_left(tick, now)}, {when(tick)}"))
    ticks = []
    mark = start
    while mark <= end:
        offset = round((mark - now).total_seconds() / 60)
        ticks.append({"left": at(mark), "label": "now" if offset == 0 else f"{offset:+d}m"})
        mark += _AXIS_EVERY
    return {
        "window": str(timedelta(seconds=round(page.status.sensor.within_seconds))),
        "start": start,
        "end": end,
        "now": at(now),
        "axis": ticks,
        "lanes": lanes,
        "fires": fires,
        "failures": failures,
        "due": [
            {
                "left": at(t),
                "kind": kind,
                "title": f"{text} ({when(t)})",
                "text": text,
                "flip": at(t) > 60,  # its label goes left of the line, to stay in view
            }
            for t, kind, text in sorted(due)
        ],
        "threshold": _threshold(page),
        "filtered": sorted(
            (m for lane in page.lanes for m in lane.marks if m.kind == "filtered"),
            key=lambda m: m.at,
        ),
    }


def _threshold(page: SensorPage) -> list[dict[str, Any]]:
    """A threshold's count per key, as ``3 of 5`` and a bar."""
    threshold = (page.status.sensor.options or {}).get("threshold")
    if not threshold:
        return []
    return [
        {
            "key": p.key,
            "count": p.count,
            "of": threshold,
            "width": round(100 * min(p.count / threshold, 1.0), 1),
        }
        for p in page.status.progress
        if p.count is not None
    ]

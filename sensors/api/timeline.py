"""A run's phase timeline on its web page: marks for each phase change, and bar segments.

The bar spans from the run's first phase change to its last, or to now while the run has
not finished: a running run's RUNNING grows as it runs, and the moment it took in QUEUED
stays a sliver.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sensors.queries.runs import RunDetail

__all__ = ["marks", "segments"]

_FINAL_WIDTH = 3.0  # percent: a finished run's last phase has no end, a short cap shows it
_MIN_WIDTH = 0.5  # percent: a phase that took a moment still shows


def marks(detail: RunDetail, now: datetime) -> list[dict[str, Any]]:
    """The run's and its attempts' phase changes: when, and where on the bar (``left``)."""
    if not detail.history:
        return []
    start, span = detail.history[0].at, _span(detail, now)
    return [
        {
            "what": "run" if change.attempt is None else f"attempt #{change.attempt}",
            "phase": change.phase,
            "at": change.at,
            "offset": (change.at - start).total_seconds(),
            "left": round(100 * (change.at - start).total_seconds() / span, 2),
        }
        for change in detail.history
    ]


def segments(detail: RunDetail, now: datetime) -> list[dict[str, Any]]:
    """The run's own phases as bar segments: where each starts and how wide, in percent."""
    changes = [c for c in detail.history if c.attempt is None]
    if not changes:
        return []
    start, span = detail.history[0].at, _span(detail, now)
    going = _going(detail)
    shown = []
    for change, following in zip(changes, [*changes[1:], None], strict=True):
        if following is None and not going:
            width = _FINAL_WIDTH
        else:
            until = following.at if following is not None else now
            width = max(100 * (until - change.at).total_seconds() / span, _MIN_WIDTH)
        left = min(100 * (change.at - start).total_seconds() / span, 100 - width)
        shown.append({"phase": change.phase, "left": round(left, 2), "width": round(width, 2)})
    return shown


def _going(detail: RunDetail) -> bool:
    return detail.run.finished_at is None


def _span(detail: RunDetail, now: datetime) -> float:
    """Seconds from the first change to the last, or to now while the run goes on."""
    start, last = detail.history[0].at, detail.history[-1].at
    end = max(now, last) if _going(detail) else last
    return max((end - start).total_seconds(), 0.001)

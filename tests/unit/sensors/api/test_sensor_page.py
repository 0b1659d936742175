"""Where a sensor's last hour goes on its page's timeline, and how time left reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sensors.api.sensor_page import axis, layout, time_left
from sensors.queries.sensor_page import Lane, SensorPage
from sensors.queries.sensors import DependencyStatus, SensorStatus
from sensors.runs.activity import FILTERED, OFFERED, ActivityMark
from sensors.runs.models import DeployedSensor, Hold, KeyProgress, RunRecord, TriggerFailure
from tests.fixtures.runs import new_run

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(seconds=-5), "now"),
        (timedelta(seconds=42), "in 42s"),
        (minutes(59) + timedelta(seconds=58), "in 59m 58s"),
        (timedelta(hours=3, minutes=2, seconds=9), "in 3h 2m"),
        (timedelta(days=2, hours=4, minutes=1), "in 2d 4h"),
    ],
)
def test_time_left_reads_in_its_two_largest_units(left: timedelta, text: str) -> None:
    assert time_left(NOW + left, NOW) == text


def page(
    *,
    options: dict[str, Any] | None = None,
    schedule: dict[str, Any] | None = None,
    lanes: Sequence[Lane] = (),
    progress: Sequence[KeyProgress] = (),
    fires: Sequence[RunRecord] = (),
    failures: Sequence[TriggerFailure] = (),
    next_tick: datetime | None = None,
) -> SensorPage:
    sensor = DeployedSensor(
        project="p",
        domain="d",
        sensor_id="f.trigger",
        flow="f",
        trigger="trigger",
        dependencies=[{"dep": lane.dep, "name": lane.event} for lane in lanes],
        within_seconds=7200,
        deployed_at=NOW - 2 * HOUR,
        updated_at=NOW - 2 * HOUR,
        options=options,
        schedule=schedule,
    )
    deps = [
        DependencyStatus(dep=lane.dep, event=lane.event, state="awaited", held=[], filtered=None)
        for lane in lanes
    ]
    status = SensorStatus(
        sensor=sensor,
        dependencies=deps,
        progress=list(progress),
        next_tick=next_tick,
        last_run=None,
        failures=[],
    )
    return SensorPage(
        status=status,
        description="",
        since=NOW - HOUR,
        now=NOW,
        lanes=list(lanes),
        fires=list(fires),
        failures=list(failures),
        progress=[],
        recent=[],
    )


def lane(dep: str, marks: Sequence[ActivityMark] = (), holds: Sequence[Hold] = ()) -> Lane:
    return Lane(
        dep=dep,
        event=dep,
        offered=len(marks),
        per_minute={NOW - minutes(30): 6},
        marks=list(marks),
        holds=list(holds),
    )


def test_the_axis_ends_just_after_now_unless_something_falls_due_within_the_hour_ahead() -> None:
    assert axis(page()) == (NOW - HOUR, NOW + minutes(2))
    soon = [KeyProgress(sensor_id="f.trigger", key="", deadline=NOW + minutes(30))]
    assert axis(page(progress=soon)) == (NOW - HOUR, NOW + minutes(30))
    late = [KeyProgress(sensor_id="f.trigger", key="", debounce_until=NOW + 5 * HOUR)]
    assert axis(page(progress=late)) == (NOW - HOUR, NOW + HOUR)


def test_marks_holds_and_fires_sit_where_their_times_fall() -> None:
    # Given an hour and 30 minutes ahead (a hold expires then): 90 minutes, 1.11% each
    held = Hold(
        sensor_id="f.trigger",
        key='"k1"',
        dep="a",
        event_id="e2",
        event_time=NOW - minutes(90),  # before the hour: the bar starts at the left edge
        expires_at=NOW + minutes(30),
    )
    marks = [
        ActivityMark("f.trigger", "a", OFFERED, "e1", None, NOW - minutes(45)),
        ActivityMark("f.trigger", "a", FILTERED, "e3", "too small", NOW),
    ]
    run = RunRecord.model_validate(
        {
            **new_run("f-1 a/b", sensor="f.trigger").model_dump(),
            "phase": "SUCCEEDED",
            "created_at": NOW - minutes(15),
            "updated_at": NOW,
        }
    )
    failure = TriggerFailure(
        sensor_id="f.trigger", event_name="a", event_id="e0", reason="bad", created_at=NOW
    )
    view = layout(page(lanes=[lane("a", marks, [held])], fires=[run], failures=[failure]))
    [a] = view["lanes"]
    # Then each is placed in percent of the 90 minutes
    assert [m["left"] for m in a["marks"]] == [16.67, 66.67]
    assert a["marks"][1]["title"] == f"event e3 filtered out at {NOW.isoformat()}: too small"
    assert view["now"] == 66.67
    [bar] = a["holds"]
    assert (bar["left"], bar["width"]) == (0.0, 100.0)
    assert bar["left_text"] == "expires in 30m 0s"
    assert 'for key "k1"' in bar["title"]
    [minute] = a["minutes"]
    assert (minute["left"], minute["width"], minute["height"]) == (33.33, 1.11, 100)
    [fire] = view["fires"]
    assert fire["left"] == 50.0 and fire["href"] == "/runs/p/d/f-1%20a%2Fb"
    assert view["failures"][0]["left"] == 66.67
    assert [t["label"] for t in view["axis"]][::3] == ["-60m", "-30m", "now", "+30m"]


def test_what_falls_due_is_marked_ahead_of_now_with_the_time_left() -> None:
    progress = [
        KeyProgress(sensor_id="f.trigger", key="", deadline=NOW + minutes(10)),
        KeyProgress(sensor_id="f.trigger", key='"x"', debounce_until=NOW + minutes(5)),
        KeyProgress(sensor_id="f.trigger", key="", deadline=NOW - minutes(1)),  # past
    ]
    due = layout(page(progress=progress))["due"]
    assert [(d["kind"], d["text"]) for d in due] == [
        ("debounce", 'debounced fire launches in 5m 0s (key "x")'),
        ("deadline", "absence fires in 10m 0s"),
    ]


def test_a_schedule_has_no_lanes_and_its_next_tick_falls_due() -> None:
    view = layout(page(schedule={"rate": "1s"}, next_tick=NOW + timedelta(seconds=1)))
    assert view["lanes"] == []
    [tick] = view["due"]
    assert tick["kind"] == "tick" and tick["text"].startswith("next tick in 1s")


def test_a_thresholds_count_per_key_reads_n_of_m() -> None:
    progress = [KeyProgress(sensor_id="f.trigger", key='"c1"', count=2)]
    [bar] = layout(page(options={"threshold": 3}, progress=progress))["threshold"]
    assert (bar["count"], bar["of"], bar["width"], bar["key"]) == (2, 3, 66.7, '"c1"')

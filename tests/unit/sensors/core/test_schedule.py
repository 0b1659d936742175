"""Schedule maths: due ticks, catch-up, daylight saving time and tick run names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sensors.core.schedule import next_tick, plan, previous_ticks, tick_run_name
from triggers.spec import ScheduleSpec

NOW = datetime(2026, 11, 23, 12, 0, 10, 500_000, tzinfo=UTC)
GRACE = timedelta(seconds=30)


def every_second(catchup: str = "latest", max_catchup: int = 100) -> ScheduleSpec:
    return ScheduleSpec(rate=timedelta(seconds=1), catchup=catchup, max_catchup=max_catchup)  # type: ignore[arg-type]


def test_nothing_is_due_before_the_next_tick() -> None:
    assert plan(every_second(), cursor=NOW - timedelta(seconds=0.4), now=NOW, grace=GRACE) is None


def test_an_on_time_tick_fires_whatever_the_catchup() -> None:
    for catchup in ("latest", "all", "none"):
        # Given the previous tick was decided, when the next one comes due
        result = plan(
            every_second(catchup), cursor=NOW - timedelta(seconds=1.5), now=NOW, grace=GRACE
        )
        # Then it fires, and nothing is skipped
        assert result is not None
        assert result.fire == (datetime(2026, 11, 23, 12, 0, 10, tzinfo=UTC),)
        assert result.skipped == 0


def test_after_downtime_latest_runs_the_most_recent_missed_tick_once() -> None:
    # Given ten seconds without a scheduler (grace is at most one period: 1 s here)
    result = plan(
        every_second("latest"), cursor=NOW - timedelta(seconds=10.5), now=NOW, grace=GRACE
    )
    assert result is not None
    # Then the on-time tick fires, plus the most recent missed one; 8 are skipped
    assert [t.second for t in result.fire] == [9, 10]
    assert result.skipped == 8
    assert result.cursor == datetime(2026, 11, 23, 12, 0, 10, tzinfo=UTC)


def test_after_downtime_all_runs_every_missed_tick_oldest_first() -> None:
    result = plan(every_second("all"), cursor=NOW - timedelta(seconds=10.5), now=NOW, grace=GRACE)
    assert result is not None
    assert [t.second for t in result.fire] == list(range(1, 11))
    assert result.skipped == 0


def test_catchup_all_is_capped_by_max_catchup_keeping_the_newest() -> None:
    result = plan(
        every_second("all", max_catchup=3), cursor=NOW - timedelta(hours=1), now=NOW, grace=GRACE
    )
    assert result is not None
    assert [t.second for t in result.fire] == [7, 8, 9, 10]  # 3 missed + the on-time one
    assert result.skipped == 3600 - 4


def test_after_downtime_none_skips_the_missed_ticks() -> None:
    result = plan(every_second("none"), cursor=NOW - timedelta(seconds=10.5), now=NOW, grace=GRACE)
    assert result is not None
    assert [t.second for t in result.fire] == [10]
    assert result.skipped == 9


def test_a_daily_schedule_after_a_night_down_runs_yesterdays_tick_with_latest() -> None:
    daily = ScheduleSpec(cron="0 0 * * *")
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    result = plan(daily, cursor=datetime(2026, 11, 21, 0, 0, tzinfo=UTC), now=now, grace=GRACE)
    assert result is not None
    assert result.fire == (datetime(2026, 11, 23, 0, 0, tzinfo=UTC),)
    assert result.skipped == 1  # the 22nd


def test_cron_follows_the_wall_clock_across_daylight_saving_changes() -> None:
    berlin = ScheduleSpec(cron="30 2 * * *", tz="Europe/Berlin")
    ticks = previous_ticks(
        berlin, datetime(2026, 10, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC), 10
    )
    # 02:30 local: CEST (UTC+2) before 25 October, CET (UTC+1) after; once per day
    assert [t.isoformat() for t in reversed(ticks)] == [
        "2026-10-23T00:30:00+00:00",
        "2026-10-24T00:30:00+00:00",
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
    ]
    hourly = ScheduleSpec(cron="30 * * * *", tz="Europe/Berlin")
    after = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    # The repeated hour (02:30 happens twice when clocks go back) fires once
    assert next_tick(hourly, after) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert next_tick(hourly, next_tick(hourly, after)) == datetime(2026, 10, 25, 2, 30, tzinfo=UTC)


@given(
    st.sampled_from(["*/7 * * * *", "0 */3 * * 1-5", "15 2 * * *", "@hourly"]),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1)),
)
def test_stepping_back_and_stepping_forward_agree(cron: str, tz: str, start: datetime) -> None:
    spec = ScheduleSpec(cron=cron, tz=tz)
    after = start.replace(tzinfo=UTC)
    forward = [next_tick(spec, after)]
    for _ in range(4):
        forward.append(next_tick(spec, forward[-1]))
    backward = previous_ticks(spec, forward[-1], after, 10)
    assert list(reversed(backward)) == forward


def test_a_tick_run_name_is_stable_and_differs_by_tick_and_revision() -> None:
    base = {"project": "p", "domain": "d", "flow": "f", "trigger": "schedule", "prefix": "f"}
    tick = datetime(2026, 11, 23, tzinfo=UTC)
    name = tick_run_name(**base, revision=1, tick=tick)  # type: ignore[arg-type]
    assert name == tick_run_name(**base, revision=1, tick=tick.astimezone())  # type: ignore[arg-type]
    assert name != tick_run_name(**base, revision=2, tick=tick)  # type: ignore[arg-type]
    assert name != tick_run_name(**base, revision=1, tick=tick + timedelta(seconds=1))  # type: ignore[arg-type]
    assert name.startswith("f-") and len(name) == 22

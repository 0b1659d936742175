"""A sensor's page as the query reads it from the store: its hour per dependency, what it
holds, its fires and failures, and an unknown id answered with the one meant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensors.queries.sensor_page import SensorPage, UnknownSensor, sensor_page
from sensors.runs.activity import FILTERED, OFFERED, ActivityMark, add_activity, minute_of
from sensors.runs.deploy import deploy
from sensors.runs.models import Hold, KeyProgress, TriggerFailure
from sensors.runs.sensor_records import record_trigger_failure
from sensors.runs.status import replace_holds, replace_progress
from sensors.runs.store import RunStore
from tests.fixtures.runs import new_run
from triggers import trigger
from triggers.declarations import flow_spec

SENSOR = "pay.trigger"
NOW = datetime.now(UTC)


@trigger(events=[{"name": "payment", "filters": ["$.amount >= 100"]}, "approved"], within="2h")
def pay(amount: float = 0) -> None: ...


@trigger(event="order_failed", threshold=3, within="10m")
def alarm() -> None: ...


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as opened:
        await deploy(opened, [flow_spec(pay), flow_spec(alarm)], project="p", domain="d")
        yield opened


def mark(dep: str, event: str, minutes_ago: float, reason: str | None = None) -> ActivityMark:
    kind = FILTERED if reason else OFFERED
    return ActivityMark(SENSOR, dep, kind, event, reason, NOW - timedelta(minutes=minutes_ago))


async def page_of(store: RunStore, sensor_id: str = SENSOR) -> SensorPage:
    page = await sensor_page(store, project="p", domain="d", sensor_id=sensor_id, now=NOW)
    assert isinstance(page, SensorPage)
    return page


async def test_each_dependency_gets_its_hour_of_marks_counts_and_holds(store: RunStore) -> None:
    # Given marks in the hour and before it, counts by the minute, and a held payment
    marks = [
        mark("payment", "too-old", 61),
        mark("payment", "small", 30, reason="$.amount = 5 is not >= 100"),
        mark("payment", "big", 20),
        mark("approved", "ok", 10),
    ]
    ten_ago = minute_of(NOW - timedelta(minutes=10))
    offers = {
        (minute_of(NOW - timedelta(minutes=90)), SENSOR, "payment"): 50,
        (minute_of(NOW - timedelta(minutes=20)), SENSOR, "payment"): 4,
        (ten_ago, SENSOR, "approved"): 1,
    }
    await add_activity(store, "p", "d", events={}, offers=offers, marks=marks)
    held = Hold(
        sensor_id=SENSOR,
        key="",
        dep="payment",
        event_id="big",
        event_time=NOW - timedelta(minutes=20),
        expires_at=NOW + timedelta(minutes=100),
    )
    await replace_holds(store, "p", "d", {(SENSOR, ""): [held]})
    # When its page is read
    page = await page_of(store)
    # Then each dependency has its own lane, in declaration order, with the hour's marks
    payment, approved = page.lanes
    assert (payment.dep, approved.dep) == ("payment", "approved")
    assert [(m.kind, m.event_id) for m in payment.marks] == [
        ("filtered", "small"),
        ("offered", "big"),
    ]
    assert [m.event_id for m in approved.marks] == ["ok"]
    # And the hour's counts, what it holds, and the description
    assert (payment.offered, approved.offered) == (4, 1)
    assert approved.per_minute == {ten_ago: 1}
    assert payment.holds == [held] and approved.holds == []
    assert page.description == "payment && approved within 2:00:00"
    assert page.since == NOW - timedelta(hours=1)


async def test_its_fires_and_failures_are_those_of_the_hour(store: RunStore) -> None:
    # Given a run of the sensor, one of another, and failures now and long ago
    await store.create_run(new_run("pay-1", sensor=SENSOR, flow="pay"))
    await store.create_run(new_run("other-1", sensor="alarm.trigger", flow="alarm"))
    for event_id, at in (("now", NOW), ("old", NOW - timedelta(hours=2))):
        failure = TriggerFailure(
            sensor_id=SENSOR, event_name="payment", event_id=event_id, reason="bad", created_at=at
        )
        await record_trigger_failure(store, failure)
    # Then its page has its run as a fire, and the failure of the hour
    page = await page_of(store)
    assert [r.name for r in page.fires] == [r.name for r in page.recent] == ["pay-1"]
    assert [f.event_id for f in page.failures] == ["now"]


async def test_a_thresholds_page_has_its_count_per_key(store: RunStore) -> None:
    progress = KeyProgress(sensor_id="alarm.trigger", key="", count=2)
    await replace_progress(store, "p", "d", {("alarm.trigger", ""): progress})
    page = await page_of(store, "alarm.trigger")
    assert page.progress == ["count      2/3"]
    assert page.status.progress == [progress]


@pytest.mark.parametrize(
    ("asked", "meant"),
    [("pay.triger", SENSOR), ("alarm", "alarm.trigger"), ("nothing.like.it", None)],
)
async def test_an_unknown_id_is_answered_with_the_id_meant(
    store: RunStore, asked: str, meant: str | None
) -> None:
    page = await sensor_page(store, project="p", domain="d", sensor_id=asked, now=NOW)
    assert isinstance(page, UnknownSensor)
    assert page.suggestion == meant
    assert page.known == ["alarm.trigger", SENSOR]
    assert page.message.startswith(f"no sensor {asked!r} is deployed in p/d")
    assert (f"did you mean {meant!r}?" in page.message) == (meant is not None)

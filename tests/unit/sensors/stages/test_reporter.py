"""The sensor stage's reporter: what the stage saw reaches the store once per report, and a
stage with reporting off counts nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sensors.core.router import Router
from sensors.core.types import Arrival
from sensors.runs.activity import event_counts, list_marks, offer_counts
from sensors.runs.store import RunStore
from sensors.stages.emitter import Emitter
from sensors.stages.reporter import StatusReporter
from sensors.stages.sensor_stage import SensorStage
from tests.fixtures.core import sensors
from tests.fixtures.stub_kafka import StubKafka, StubProducer
from triggers import trigger
from triggers.envelope import Envelope
from triggers.settings import Settings


@trigger(event="data_updated")
def refresh(rows: int = 0) -> None: ...


@trigger(events=[{"name": "payment", "filters": ["$.amount >= 100"]}, "approved"])
def big_payment(amount: float = 0) -> None: ...


@trigger(events=["orders.*", "customers"], within="1h")
def orders(region: str = "") -> None: ...


ROUTER = Router(sensors(refresh, big_payment, orders))


async def test_a_stage_with_reporting_off_counts_nothing(
    settings: Settings, store: RunStore, kafka: StubKafka, producer: StubProducer
) -> None:
    off = settings.model_copy(update={"sensor_status_interval": 0.0})
    reporter = StatusReporter(off, store)
    stage = SensorStage(ROUTER, Emitter(off, store, producer), 4, reporter)
    kafka.publish(settings.topic_events, "approved", {})
    landed = await stage.handle(kafka.batch(settings.topic_events))
    producer.release()
    await asyncio.wait_for(landed, 5)
    await reporter.flush(force=True)
    assert not reporter._activity
    since = datetime.now(UTC) - timedelta(hours=1)
    where = {"project": settings.project, "domain": settings.domain}
    assert await event_counts(store, **where, since=since) == {}


async def test_a_stage_reports_what_it_saw_to_the_store(
    settings: Settings, store: RunStore, kafka: StubKafka, producer: StubProducer
) -> None:
    # Given a stage that reports, and a batch with a filtered and an offered payment
    reporter = StatusReporter(settings, store)
    stage = SensorStage(ROUTER, Emitter(settings, store, producer), 4, reporter)
    small = kafka.publish(settings.topic_events, "payment", {"amount": 1})
    big = kafka.publish(settings.topic_events, "payment", {"amount": 100})
    landed = await stage.handle(kafka.batch(settings.topic_events))
    producer.release()
    await asyncio.wait_for(landed, 5)
    # When it reports
    await reporter.flush(force=True)
    # Then the store has the counts and the marks
    where = {"project": settings.project, "domain": settings.domain}
    since = datetime.now(UTC) - timedelta(minutes=15)
    assert await event_counts(store, **where, since=since) == {("tripwire://publish", "payment"): 2}
    assert await offer_counts(store, **where, since=since) == {
        ("big_payment.trigger", "payment"): 1
    }
    marks = await list_marks(store, **where, sensor_id="big_payment.trigger", since=since)
    assert [(m.kind, m.event_id) for m in marks] == [("offered", big), ("filtered", small)]
    assert marks[1].reason == "$.amount = 1 is not >= 100"
    # And what it wrote is not written again
    await reporter.flush(force=True)
    assert await offer_counts(store, **where, since=since) == {
        ("big_payment.trigger", "payment"): 1
    }


async def test_a_busy_stage_writes_its_counts_once_their_minute_has_ended(
    settings: Settings, store: RunStore
) -> None:
    # Given a report of more event names than are written at every report: some counted in
    # the minute that ended, some in this one
    reporter = StatusReporter(settings, store)
    ended = datetime.now(UTC) - timedelta(minutes=1)
    now = ended + timedelta(seconds=90)  # in a minute that cannot have ended at the report
    for at in (ended, now):
        arrivals = [
            Arrival(Envelope(f"name-{n}", f"{at.minute}-{n}", "s", at, {}), at) for n in range(150)
        ]
        arrivals.append(Arrival(Envelope("approved", f"ok-{at.minute}", "s", at, {}), at))
        reporter.routed(arrivals, ROUTER.route(arrivals), ROUTER, at)
    # When it reports
    await reporter.flush(force=True)
    # Then the minute that ended is in the store, and this one's counts wait for it to end
    where = {"project": settings.project, "domain": settings.domain}
    since = ended - timedelta(minutes=1)
    counts = await event_counts(store, **where, since=since)
    assert len(counts) == 151 and set(counts.values()) == {1}
    assert await offer_counts(store, **where, since=since) == {
        ("big_payment.trigger", "approved"): 1
    }
    # And the marks of both are in
    marks = await list_marks(store, **where, sensor_id="big_payment.trigger", since=since)
    assert [m.event_id for m in marks] == [f"ok-{ended.minute}", f"ok-{now.minute}"]

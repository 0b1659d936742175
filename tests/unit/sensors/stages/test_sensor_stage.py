"""The sensor stage: a batch of events becomes run requests, offers and dead letters, and is
committed only once all of them landed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from sensors.core.router import Router
from sensors.core.wire import decode_offers, decode_offers_record, key_partition, partition_of
from sensors.runs.models import NewRun, PhaseChange
from sensors.runs.store import RunStore
from sensors.stages.deadletter import REASON
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import consume_batches
from sensors.stages.lifecycle_relay import lifecycle_record
from sensors.stages.sensor_stage import SensorStage
from tests.fixtures.core import sensors
from tests.fixtures.stub_kafka import StubKafka, StubProducer, settle
from triggers import trigger, trigger_on_finish
from triggers.settings import Settings


@trigger(event="data_updated")
def refresh(rows: int = 0) -> None: ...


@trigger(events=["orders", "customers"], correlate_by="$.date", within="1h")
def daily(date: str = "") -> None: ...


@trigger(events=[{"name": "payment", "filters": ["$.amount >= 100"]}, "approved"])
def big_payment(amount: float = 0) -> None: ...


@trigger_on_finish(flow="refresh")
def after_refresh() -> None: ...


AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


def stage_of(emitter: Emitter) -> SensorStage:
    """The sensors of this module's flows, deployed an hour ago."""
    flows = sensors(refresh, daily, big_payment, after_refresh, deployed_at=AN_HOUR_AGO)
    return SensorStage(Router(flows), emitter, offer_partitions=4)


@pytest.fixture
def stage(emitter: Emitter) -> SensorStage:
    return stage_of(emitter)


async def handled(stage: SensorStage, kafka: StubKafka, producer: StubProducer, topic: str) -> None:
    """Hand ``stage`` everything on ``topic`` as one batch, and land its output."""
    landed = await stage.handle(kafka.batch(topic))
    producer.release()
    await asyncio.wait_for(landed, 5)


async def test_a_single_event_sensor_fires_a_run_request_keyed_by_run_name(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    event_id = kafka.publish(settings.topic_events, "data_updated", {"rows": 3})
    await handled(stage, kafka, producer, settings.topic_events)
    [record] = kafka.records(settings.topic_run_requests)
    assert record.key is not None and record.value is not None
    request = NewRun.model_validate_json(record.value)
    assert (request.flow, request.parameters) == ("refresh", {"rows": 3})
    assert request.name == record.key.decode()
    assert [e["id"] for e in request.events] == [event_id]
    assert record.partition == key_partition(record.key, 4)
    assert (stage.stats.events, stage.stats.fires) == (1, 1)


async def test_events_of_a_multi_event_sensor_go_on_as_offers_on_the_partition_of_their_key(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    orders = kafka.publish(settings.topic_events, "orders", {"date": "d1"})
    customers = kafka.publish(settings.topic_events, "customers", {"date": "d2"}, partition=1)
    await handled(stage, kafka, producer, settings.topic_events)
    found = {}
    for record in kafka.records(settings.topic_sensor_offers):
        assert record.value is not None
        for offer in decode_offers(record.value):
            assert record.partition == partition_of(offer.sensor_id, offer.key, 4)
            found[offer.arrival.envelope.id] = (offer.sensor_id, offer.dep, offer.key)
    assert found == {  # keyed by the value at correlate_by, as canonical JSON
        orders: ("daily.trigger", "orders", '"d1"'),
        customers: ("daily.trigger", "customers", '"d2"'),
    }
    assert kafka.records(settings.topic_run_requests) == []
    assert stage.stats.offers == 2


async def test_an_undecodable_record_goes_to_the_dead_letters_and_the_batch_goes_on(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    # Given a batch with a record that is not a CloudEvent, then an event
    kafka.append(settings.topic_events, b"not an event", key=b"k")
    kafka.publish(settings.topic_events, "data_updated", {"rows": 1})
    await handled(stage, kafka, producer, settings.topic_events)
    # Then the record is set aside as it was, with why and where from
    [letter] = kafka.records(settings.topic_dead_letter)
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (b"k", b"not an event")
    assert headers[REASON] and headers["tripwire_topic"] == settings.topic_events.encode()
    assert (headers["tripwire_partition"], headers["tripwire_offset"]) == (b"0", b"0")
    # And the event behind it still fires
    assert len(kafka.records(settings.topic_run_requests)) == 1
    assert (stage.stats.undecodable, stage.stats.fires) == (1, 1)


async def test_a_payload_over_the_limit_is_dead_lettered_cut_to_the_limit(
    tmp_path: Path, store: RunStore, kafka: StubKafka
) -> None:
    settings = Settings(home=tmp_path, max_payload_bytes=100)
    producer = kafka.producer()
    stage = stage_of(Emitter(settings, store, producer))
    kafka.publish(settings.topic_events, "data_updated", {"rows": 1, "blob": "x" * 200})
    landed = await stage.handle(kafka.batch(settings.topic_events))
    await asyncio.wait_for(landed, 5)
    [letter] = kafka.records(settings.topic_dead_letter)
    headers = dict(letter.headers)
    assert b"TRIPWIRE_MAX_PAYLOAD_BYTES" in headers[REASON]
    assert letter.value is not None and len(letter.value) == 100
    assert int(headers["tripwire_original_bytes"]) > 200
    assert kafka.records(settings.topic_run_requests) == []


async def test_an_event_that_reached_the_broker_before_the_deployment_fires_nothing(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    before = AN_HOUR_AGO - timedelta(minutes=1)
    kafka.publish(
        settings.topic_events,
        "data_updated",
        {"rows": 1},
        timestamp_ms=int(before.timestamp() * 1000),
    )
    await handled(stage, kafka, producer, settings.topic_events)
    assert kafka.records(settings.topic_run_requests) == []
    assert stage.stats.ignored_before_deploy == 1


async def test_a_finished_run_reaches_the_sensors_waiting_for_its_flow(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    change = PhaseChange(
        id=7,
        project="p",
        domain="d",
        name="refresh-abc",
        flow="refresh",
        phase="SUCCEEDED",
        at=datetime.now(UTC),
    )
    event = lifecycle_record(change, settings)
    kafka.append(settings.topic_run_events, event.value, key=event.key, headers=event.headers)
    await handled(stage, kafka, producer, settings.topic_run_events)
    [record] = kafka.records(settings.topic_run_requests)
    assert record.value is not None
    assert NewRun.model_validate_json(record.value).flow == "after_refresh"


async def test_an_event_a_filter_rejects_is_counted_with_the_reason(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    small = kafka.publish(settings.topic_events, "payment", {"amount": 5})
    await handled(stage, kafka, producer, settings.topic_events)
    entry = stage.stats.filtered[("big_payment.trigger", "payment")]
    assert (entry.count, entry.last_event_id) == (1, small)
    assert entry.last_reason == "$.amount = 5 is not >= 100"
    assert kafka.records(settings.topic_sensor_offers) == []


async def test_a_batch_of_events_is_committed_only_once_its_output_landed(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    # Given the stage consuming the events topic, and a batch with a fire, an offer and junk
    consumer = kafka.consumer(settings.topic_events, group_id="sensors")
    stop = asyncio.Event()
    loop = asyncio.create_task(
        consume_batches(consumer, stage.handle, stop=stop, name="sensors", tick=stage.tick)
    )
    kafka.publish(settings.topic_events, "data_updated", {"rows": 1})
    kafka.publish(settings.topic_events, "orders", {"date": "d1"}, partition=2)
    kafka.append(settings.topic_events, b"junk", partition=3)
    # When the batch is handled, and its output is in flight
    await consumer.polled(3)
    assert {send.topic for send in producer.in_flight} == {
        settings.topic_run_requests,
        settings.topic_sensor_offers,
        settings.topic_dead_letter,
    }
    # Then nothing is committed, even when all but one record landed
    producer.release(lambda send: send.topic != settings.topic_dead_letter)
    await consumer.polled(2)
    assert consumer.commits == []
    # And once the last one lands, the batch is committed
    producer.release()
    await consumer.polled(2)
    topic = settings.topic_events
    assert consumer.commits == [
        {TopicPartition(topic, 0): 1, TopicPartition(topic, 2): 1, TopicPartition(topic, 3): 1}
    ]
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_the_next_batch_is_routed_while_one_is_in_flight(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    # Given a batch whose run request is in flight
    kafka.publish(settings.topic_events, "data_updated", {"rows": 1})
    kafka.publish(settings.topic_events, "data_updated", {"rows": 2})
    [(tp, records)] = kafka.batch(settings.topic_events).items()
    first = await asyncio.wait_for(stage.handle({tp: records[:1]}), 5)
    # When the next batch is handled
    second = await asyncio.wait_for(stage.handle({tp: records[1:]}), 5)
    # Then its run request goes out too, and neither is done before they land
    await settle()
    assert len(producer.in_flight) == 2
    assert not first.done() and not second.done()
    producer.release()
    assert await asyncio.wait_for(first, 5) is False
    assert await asyncio.wait_for(second, 5) is False


def marks_on(kafka: StubKafka, settings: Settings) -> list[dict[str, int]]:
    """The marks records on every offers partition, in order."""
    found = []
    for value in kafka.values(settings.topic_sensor_offers):
        item = decode_offers_record(value)
        if isinstance(item, dict):
            found.append(item)
    return found


async def test_marks_wait_until_what_they_report_has_landed(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    # Given a stage whose consumer is caught up on the events topic, with a batch routed
    events = kafka.consumer(settings.topic_events, group_id="sensors")
    stage.attach(events)
    kafka.publish(settings.topic_events, "orders", {"date": "d1"})
    landed = await stage.handle(await events.getmany())
    polled_at = max(events.last_poll_timestamp(tp) or 0 for tp in events.assignment())
    # When its output cannot land (the broker, or the run store, is down)
    assert await stage.mark(force=True) is None
    # Then no marks go out: the correlator must not take time past events still on their way
    assert marks_on(kafka, settings) == []
    # And once it landed, every offers partition is marked with the time of the last fetch,
    # less the grace, for every input partition
    producer.release()
    await asyncio.wait_for(landed, 5)
    marking = await stage.mark(force=True)
    assert marking is not None
    await producer.land(marking)
    grace = int(settings.absence_grace * 1000)
    expected = {
        f"{tp.topic}:{tp.partition}": polled - grace
        for tp in events.assignment()
        if (polled := events.last_poll_timestamp(tp)) is not None
    }
    assert len(expected) == 4 and max(expected.values()) == polled_at - grace
    assert marks_on(kafka, settings) == [expected] * 4


async def test_a_partition_that_is_behind_is_marked_with_its_last_handled_record(
    stage: SensorStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    # Given two events on partition 0, the stage having handled only the first
    events = kafka.consumer(settings.topic_events, group_id="sensors")
    stage.attach(events)
    tp = TopicPartition(settings.topic_events, 0)
    kafka.publish(settings.topic_events, "orders", {"date": "d1"}, timestamp_ms=1_000_000)
    kafka.publish(settings.topic_events, "orders", {"date": "d2"}, timestamp_ms=2_000_000)
    await producer.land(await stage.handle({tp: [(await events.getmany(max_records=1))[tp][0]]}))
    # When it marks
    marking = await stage.mark(force=True)
    assert marking is not None
    await producer.land(marking)
    # Then the partition is marked at the first record's time, less the grace
    grace = int(settings.absence_grace * 1000)
    assert {r[f"{settings.topic_events}:0"] for r in marks_on(kafka, settings)} == {
        1_000_000 - grace
    }

"""The emitter: a batch is done only once all of its output landed, what fails is sent again,
and state changes land in the order of their batches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sensors.core.router import Router
from sensors.core.types import Decisions
from sensors.core.wire import key_partition
from sensors.runs.models import NewRun
from sensors.runs.sensor_records import list_trigger_failures
from sensors.runs.store import RunStore
from sensors.stages.emitter import Emitter
from tests.fixtures.core import arrival, sensors
from tests.fixtures.stub_kafka import Send, StubKafka, StubProducer, settle
from triggers import trigger
from triggers.settings import Settings


@trigger(event="data_updated")
def refresh(rows: int = 0) -> None: ...


def fires(*event_ids: str, rows: object = 1) -> Decisions:
    """What the router decides for a ``data_updated`` event of each id."""
    return Router(sensors(refresh)).route(
        [arrival("data_updated", event_id, rows=rows) for event_id in event_ids]
    )


def is_state(settings: Settings) -> Callable[[Send], bool]:
    return lambda send: send.topic == settings.topic_sensor_state


async def test_a_batch_is_done_only_once_every_record_of_it_landed(
    emitter: Emitter, producer: StubProducer, settings: Settings
) -> None:
    # Given a batch with a run request, an offer, a state change and a dead letter
    landed = await emitter.submit(
        fires("e1"),
        offers=[(1, b"offer")],
        changes=[(2, b"change")],
        dead=[(b"key", b"junk", [("why", b"bad")])],
    )
    assert [send.topic for send in producer.in_flight] == [
        settings.topic_run_requests,
        settings.topic_sensor_offers,
        settings.topic_dead_letter,
    ]
    # When all but the dead letter are acknowledged
    producer.release(lambda send: send.topic != settings.topic_dead_letter)
    await settle()
    # Then the batch is not done, and its state change waits
    assert not landed.done() and len(producer.sent) == 3
    # And once the dead letter is acknowledged too, the state change goes
    producer.release()
    [*_, change] = await producer.sends(4)
    assert change.topic == settings.topic_sensor_state and not landed.done()
    # And once that landed, the batch is done, with nothing sent twice
    producer.release()
    assert await asyncio.wait_for(landed, 5) is False
    assert len(producer.sent) == 4


async def test_run_requests_are_keyed_by_run_name_on_the_partition_of_that_key(
    emitter: Emitter, producer: StubProducer, kafka: StubKafka, settings: Settings
) -> None:
    decisions = fires("e1", "e2", "e3", "e4", "e5", "e6")
    landed = await emitter.submit(decisions)
    producer.release()
    await asyncio.wait_for(landed, 5)
    records = kafka.records(settings.topic_run_requests)
    assert sorted(r.key for r in records) == sorted(f.run_name.encode() for f in decisions.fires)
    for record in records:
        assert record.key is not None and record.value is not None
        assert record.partition == key_partition(record.key, 4)
        assert NewRun.model_validate_json(record.value).name == record.key.decode()
    assert len({r.partition for r in records}) > 1  # the keying shows: not all on one


async def test_offers_state_changes_and_dead_letters_go_to_their_topics_and_partitions(
    emitter: Emitter, producer: StubProducer, kafka: StubKafka, settings: Settings
) -> None:
    landed = await emitter.submit(
        Decisions(),
        offers=[(1, b"o1"), (3, b"o3")],
        changes=[(2, b"c2")],
        dead=[(b"key", b"junk", [("tripwire_reason", b"not an event")])],
    )
    await producer.land(landed)
    assert [(r.partition, r.key, r.value) for r in kafka.records(settings.topic_sensor_offers)] == [
        (1, None, b"o1"),
        (3, None, b"o3"),
    ]
    assert [(r.partition, r.key, r.value) for r in kafka.records(settings.topic_sensor_state)] == [
        (2, b"p2", b"c2")
    ]
    [letter] = kafka.records(settings.topic_dead_letter)
    assert (letter.key, letter.value, letter.headers) == (
        b"key",
        b"junk",
        [("tripwire_reason", b"not an event")],
    )


@pytest.mark.usefixtures("quick_retries")
async def test_output_whose_send_fails_is_sent_again_and_the_batch_waits_for_it(
    emitter: Emitter,
    producer: StubProducer,
    kafka: StubKafka,
    settings: Settings,
) -> None:
    # Given a batch whose run request lands and whose state change then times out
    decisions = fires("e1")
    landed = await emitter.submit(decisions, changes=[(0, b"change")])
    producer.release()
    await producer.sends(2)
    producer.fail(is_state(settings))
    # Then the state change is sent again, and the batch waits for it
    await producer.sends(3)
    await settle()
    assert not landed.done()
    # And once that lands the batch is done, saying it was sent again
    producer.release()
    assert await asyncio.wait_for(landed, 5) is True
    assert kafka.values(settings.topic_sensor_state) == [b"change"]
    [fire] = decisions.fires
    assert {r.key for r in kafka.records(settings.topic_run_requests)} == {fire.run_name.encode()}


@pytest.mark.usefixtures("quick_retries")
async def test_output_the_producer_refuses_is_handed_over_again_until_it_goes_out(
    settings: Settings, store: RunStore, kafka: StubKafka
) -> None:
    producer = kafka.producer()
    producer.refuse = 2
    emitter = Emitter(settings, store, producer)
    decisions = fires("e1")
    landed = await emitter.submit(decisions)
    assert await asyncio.wait_for(landed, 5) is True
    [fire] = decisions.fires
    assert [r.key for r in kafka.records(settings.topic_run_requests)] == [fire.run_name.encode()]


async def test_a_later_batchs_state_changes_are_sent_once_the_earlier_batchs_landed(
    emitter: Emitter, producer: StubProducer, settings: Settings
) -> None:
    # Given two batches' state changes, on two partitions
    first = await emitter.submit(Decisions(), changes=[(0, b"first")])
    second = await emitter.submit(Decisions(), changes=[(1, b"second")])
    await settle()
    # Then only the earlier one is sent
    assert [send.values for send in producer.in_flight] == [[b"first"]]
    # And the later one goes once it landed, with nothing sent twice
    producer.release()
    assert await asyncio.wait_for(first, 5) is False
    await producer.sends(2)
    producer.release()
    assert await asyncio.wait_for(second, 5) is False
    assert len(producer.sent) == 2


@pytest.mark.usefixtures("quick_retries")
async def test_state_changes_land_in_the_order_of_their_batches_when_the_earlier_is_sent_again(
    emitter: Emitter,
    producer: StubProducer,
    kafka: StubKafka,
    settings: Settings,
) -> None:
    # Given two batches' state changes on one partition
    first = await emitter.submit(Decisions(), changes=[(0, b"first")])
    second = await emitter.submit(Decisions(), changes=[(0, b"second")])
    # When the earlier one's send is lost
    await producer.sends(1)
    producer.fail()
    # Then it is sent again, and the later one waits for it
    await producer.sends(2)
    await settle()
    assert [send.values for send in producer.in_flight] == [[b"first"]]
    producer.release()
    assert await asyncio.wait_for(first, 5) is True
    # And the later one lands after it
    assert await producer.land(second) is False
    assert kafka.values(settings.topic_sensor_state) == [b"first", b"second"]


async def test_run_requests_and_offers_do_not_wait_for_an_earlier_batch(
    emitter: Emitter, producer: StubProducer, settings: Settings
) -> None:
    # Given a batch whose state change is in flight
    first = await emitter.submit(Decisions(), changes=[(0, b"held")])
    # When a later batch of a run request and an offer lands
    second = await emitter.submit(fires("e1"), offers=[(1, b"offer")])
    producer.release(lambda send: send.topic != settings.topic_sensor_state)
    # Then that batch is done, while the earlier one is not
    assert await asyncio.wait_for(second, 5) is False
    assert not first.done()


async def test_trigger_failures_are_recorded_before_the_batch_is_done(
    emitter: Emitter, producer: StubProducer, store: RunStore
) -> None:
    # Given a batch with a fire and an event whose parameters do not fit the flow
    decisions = fires("e1")
    decisions.failures += fires("bad", rows="many").failures
    landed = await emitter.submit(decisions)
    producer.release()
    # When the batch is done
    await asyncio.wait_for(landed, 5)
    # Then the failure is in the store, with the reason
    [failure] = await list_trigger_failures(store)
    assert (failure.sensor_id, failure.event_name, failure.event_id) == (
        "refresh.trigger",
        "data_updated",
        "bad",
    )
    assert "rows" in failure.reason

"""The correlation stage: offers in, run requests and changelog entries out; and the recovery
of a partition's state from its changelog when a worker is given it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from sensors.core.changelog import PartitionLog
from sensors.core.correlator import Correlator
from sensors.core.router import Router
from sensors.core.wire import decode_entry, encode_keyed, encode_marks, partition_of
from sensors.runs.models import NewRun
from sensors.runs.store import RunStore
from sensors.stages import correlation_stage
from sensors.stages.correlation_stage import CorrelationStage, StateRecovery, mark_sources
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import Superseded, consume_batches
from tests.fixtures.core import arrival, sensors
from tests.fixtures.stub_kafka import StubConsumer, StubKafka, StubProducer
from tests.fixtures.waits import eventually
from triggers import trigger
from triggers.settings import Settings


@trigger(events=["orders", "customers"], correlate_by="$.date", within="1h")
def daily(date: str = "") -> None: ...


@trigger(event="file_landed", debounce="2s")
def ingest(path: str = "") -> None: ...


DEPLOYED = sensors(daily, ingest, deployed_at=datetime.now(UTC) - timedelta(hours=1))
# Date d3's offers and changelog partition; not 0, so that a record sent to 0 by mistake shows.
D3 = partition_of("daily.trigger", '"d3"', 4)


def offer(kafka: StubKafka, settings: Settings, name: str, id: str, **payload: object) -> None:
    """Route event ``name`` as the sensor stage does, and write its offers where it would."""
    routed = Router(DEPLOYED).route([arrival(name, id, at=datetime.now(UTC), **payload)])
    for partition, record in encode_keyed(routed.offers, 4, settings.max_payload_bytes):
        kafka.append(settings.topic_sensor_offers, record, partition=partition)


def mark(kafka: StubKafka, settings: Settings, at: datetime) -> None:
    """Write marks into every offers partition, as the sensor stage does: every event up to
    ``at`` has been routed."""
    record = encode_marks({f"{settings.topic_events}:0": int(at.timestamp() * 1000)})
    for partition in range(4):
        kafka.append(settings.topic_sensor_offers, record, partition=partition)


def stage_of(
    settings: Settings, emitter: Emitter, deployed: list[Any] = DEPLOYED
) -> CorrelationStage:
    correlator = Correlator((s for s in deployed if s.stateful), 4)
    sources = mark_sources({settings.topic_events: 1})
    return CorrelationStage(settings, correlator, emitter, 4, sources)


def own(stage: CorrelationStage, *partitions: int) -> CorrelationStage:
    """Make ``stage`` the restored owner of ``partitions`` (all four by default)."""
    for p in partitions or range(4):
        stage.logs[p] = PartitionLog(p, stage.sources)
    return stage


@pytest.fixture
def stage(settings: Settings, emitter: Emitter) -> CorrelationStage:
    return own(stage_of(settings, emitter))


async def handled(
    stage: CorrelationStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    """Hand ``stage`` everything on the offers topic as one batch, and land its output."""
    await producer.land(await stage.handle(kafka.batch(settings.topic_sensor_offers)))


def held(stage: CorrelationStage) -> dict[str, list[str]]:
    """What the stage holds for ``daily``: the dependencies seen, per date."""
    return {key: list(events) for key, events in stage.correlator.held("daily.trigger").items()}


def requests(kafka: StubKafka, settings: Settings) -> list[NewRun]:
    return [
        NewRun.model_validate_json(value or b"")
        for value in kafka.values(settings.topic_run_requests)
    ]


async def test_offers_for_both_dependencies_of_a_key_fire_one_run(
    stage: CorrelationStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    offer(kafka, settings, "orders", "o3", date="d3")
    offer(kafka, settings, "customers", "c2", date="d2")
    offer(kafka, settings, "customers", "c3", date="d3")
    await handled(stage, kafka, producer, settings)
    [request] = requests(kafka, settings)
    assert request.parameters == {"date": "d3"}
    assert sorted(e["id"] for e in request.events) == ["c3", "o3"]
    assert (stage.offers, stage.fires) == (3, 1)


async def test_what_a_batch_changed_goes_to_the_changelog_on_the_partition_of_its_offers(
    stage: CorrelationStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    offer(kafka, settings, "orders", "o3", date="d3")
    await handled(stage, kafka, producer, settings)
    [record] = kafka.records(settings.topic_sensor_state)
    assert record.partition == D3 and record.value is not None
    entry = decode_entry(record.value)
    assert (entry.seq, entry.offset) == (1, 1)  # the first record; covers offset 0
    [change] = entry.changes
    assert (change.sensor_id, change.key) == ("daily.trigger", '"d3"')
    assert list(change.events) == ["orders"]
    assert kafka.records(settings.topic_run_requests) == []


async def test_a_malformed_offers_record_is_skipped_and_the_rest_of_the_batch_handled(
    stage: CorrelationStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    kafka.append(settings.topic_sensor_offers, b"not offers", partition=D3)
    offer(kafka, settings, "orders", "o3", date="d3")
    offer(kafka, settings, "customers", "c3", date="d3")
    await handled(stage, kafka, producer, settings)
    assert [r.parameters for r in requests(kafka, settings)] == [{"date": "d3"}]


async def test_the_changelog_of_a_batch_is_sent_only_once_its_run_requests_landed(
    stage: CorrelationStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    # Given a batch that fires a run and changes the state
    offer(kafka, settings, "orders", "o3", date="d3")
    offer(kafka, settings, "customers", "c3", date="d3")
    landed = await stage.handle(kafka.batch(settings.topic_sensor_offers))
    # Then only its run request is in flight: a changelog record that landed before it
    # would say the events were consumed while the run is lost to a crash
    assert {send.topic for send in producer.in_flight} == {settings.topic_run_requests}
    producer.fail()
    await producer.sends(2)  # the run request, sent again
    assert {send.topic for send in producer.in_flight} == {settings.topic_run_requests}
    producer.release()
    # And once the run request landed, the changelog goes, and the batch is done after it
    await producer.sends(3)
    assert {send.topic for send in producer.in_flight} == {settings.topic_sensor_state}
    assert not landed.done()
    producer.release()
    assert await asyncio.wait_for(landed, 5) is True  # something was sent again


async def test_a_worker_given_a_partition_replays_its_changelog_and_fires_on_the_next_offer(
    settings: Settings, store: RunStore, kafka: StubKafka
) -> None:
    # Given a worker that held an order for d3, written to the changelog, and then died
    producer, offers = kafka.producer(), kafka.consumer(settings.topic_sensor_offers)
    first = own(stage_of(settings, Emitter(settings, store, producer)))
    offer(kafka, settings, "orders", "o3", date="d3")
    await asyncio.wait_for(await first.handle(await offers.getmany()), 5)
    # When another worker is given the partition
    second = stage_of(settings, Emitter(settings, store, producer))
    readers: list[StubConsumer] = []

    def reader() -> StubConsumer:
        readers.append(kafka.consumer())
        return readers[-1]

    recovery = StateRecovery(settings, second, reader)
    await recovery.on_partitions_assigned([TopicPartition(settings.topic_sensor_offers, D3)])
    # Then it holds the order, read with a reader of its own that it closed
    assert (second.owned, held(second)) == ({D3}, {'"d3"': ["orders"]})
    assert [r.stopped for r in readers] == [True]
    # And it fenced the partition: its epoch is newer than the first owner's
    assert second.logs[D3].epoch > first.logs[D3].epoch
    # And the customers of d3 fire the run of both
    offer(kafka, settings, "customers", "c3", date="d3")
    await asyncio.wait_for(await second.handle(await offers.getmany()), 5)
    [request] = requests(kafka, settings)
    assert sorted(e["id"] for e in request.events) == ["c3", "o3"]


async def test_an_unreadable_changelog_record_is_skipped_on_replay(
    settings: Settings, stage: CorrelationStage, kafka: StubKafka
) -> None:
    kafka.append(settings.topic_sensor_state, b"written by someone else", partition=D3)
    stage.logs.clear()
    stage.emitter.producer = kafka.producer()
    recovery = StateRecovery(settings, stage, kafka.consumer)
    logs, read = await recovery.replay({D3})
    assert read == 2  # the unreadable record, and the fence
    assert held(stage) == {} and logs[D3].offset is None


async def test_the_state_of_revoked_partitions_is_dropped(
    stage: CorrelationStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    stage.logs.clear()
    recovery = StateRecovery(settings, stage, kafka.consumer)
    assigning = asyncio.create_task(
        recovery.on_partitions_assigned([TopicPartition(settings.topic_sensor_offers, D3)])
    )
    await producer.sends(1)
    producer.release()  # the fence
    await asyncio.wait_for(assigning, 5)
    offer(kafka, settings, "orders", "o3", date="d3")
    await handled(stage, kafka, producer, settings)
    assert held(stage) == {'"d3"': ["orders"]}
    await recovery.on_partitions_revoked([TopicPartition(settings.topic_sensor_offers, D3)])
    assert held(stage) == {}
    assert stage.owned == set()


async def test_a_debounced_fire_is_decided_by_the_marks_in_the_offers_not_by_a_tick(
    tmp_path: Path, store: RunStore, kafka: StubKafka
) -> None:
    # Given a debounced event whose quiet period is long over by the wall clock
    settings = Settings(home=tmp_path, absence_grace=1)
    stage = own(stage_of(settings, Emitter(settings, store, kafka.producer())))
    landed_at = datetime.now(UTC) - timedelta(seconds=10)
    routed = Router(DEPLOYED).route([arrival("file_landed", "f1", at=landed_at, path="p")])
    [(partition, record)] = encode_keyed(routed.offers, 4, settings.max_payload_bytes)
    kafka.append(settings.topic_sensor_offers, record, partition=partition)
    consumer = kafka.consumer(settings.topic_sensor_offers, group_id="correlator")
    await asyncio.wait_for(await stage.handle(await consumer.getmany()), 5)
    # When the stage ticks, nothing is decided: no mark says the quiet period is over
    await stage.tick()
    assert kafka.records(settings.topic_run_requests) == []
    # Then a mark short of the quiet period's end decides nothing either
    mark(kafka, settings, landed_at + timedelta(seconds=1))
    await asyncio.wait_for(await stage.handle(await consumer.getmany()), 5)
    assert kafka.records(settings.topic_run_requests) == []
    # And a mark past it requests the debounced run
    mark(kafka, settings, landed_at + timedelta(seconds=3))
    await asyncio.wait_for(await stage.handle(await consumer.getmany()), 5)
    [request] = requests(kafka, settings)
    assert request.parameters == {"path": "p"}


async def test_events_correlated_long_after_they_arrived_still_fire(
    emitter: Emitter, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    # Given both events of d3, which arrived two hours ago: longer than the window (1h)
    # that the correlator fell behind, after an outage
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    deployed = sensors(daily, deployed_at=two_hours_ago - timedelta(hours=1))
    stage = own(stage_of(settings, emitter, deployed))
    routed = Router(deployed).route(
        [
            arrival("orders", "o3", at=two_hours_ago, date="d3"),
            arrival("customers", "c3", at=two_hours_ago + timedelta(seconds=1), date="d3"),
        ]
    )
    for partition, record in encode_keyed(routed.offers, 4, settings.max_payload_bytes):
        kafka.append(settings.topic_sensor_offers, record, partition=partition)
    # When the correlator gets to them now
    await handled(stage, kafka, producer, settings)
    # Then they fire, as they did when on time: time is the log's, not the wall clock's
    [request] = requests(kafka, settings)
    assert sorted(e["id"] for e in request.events) == ["c3", "o3"]


async def test_offers_of_a_partition_revoked_after_they_were_fetched_are_not_handled(
    stage: CorrelationStage, kafka: StubKafka, producer: StubProducer, settings: Settings
) -> None:
    offer(kafka, settings, "orders", "o3", date="d3")
    offer(kafka, settings, "customers", "c3", date="d3")
    batch = kafka.batch(settings.topic_sensor_offers)
    recovery = StateRecovery(settings, stage, kafka.consumer)
    await recovery.on_partitions_revoked([TopicPartition(settings.topic_sensor_offers, D3)])
    await producer.land(await stage.handle(batch))
    assert (stage.offers, requests(kafka, settings), held(stage)) == (0, [], {})


async def test_a_batch_whose_partition_was_revoked_is_abandoned_not_sent_forever(
    stage: CorrelationStage,
    kafka: StubKafka,
    producer: StubProducer,
    settings: Settings,
    quick_retries: None,
) -> None:
    # Given a batch whose run request cannot land (the broker is out of reach)
    offer(kafka, settings, "orders", "o3", date="d3")
    offer(kafka, settings, "customers", "c3", date="d3")
    landed = await stage.handle(kafka.batch(settings.topic_sensor_offers))
    producer.fail()
    await producer.sends(2)
    # When its partition is given to another worker
    recovery = StateRecovery(settings, stage, kafka.consumer)
    await recovery.on_partitions_revoked([TopicPartition(settings.topic_sensor_offers, D3)])
    producer.fail()
    # Then the batch is abandoned, its changelog never sent, and it is not committed
    with pytest.raises(Superseded):
        await asyncio.wait_for(landed, 5)
    assert {send.topic for send in producer.sent} == {settings.topic_run_requests}
    assert kafka.records(settings.topic_sensor_state) == []


class _HeldReader(StubConsumer):
    """A changelog reader whose reads wait for ``gate``: a replay that takes its time."""

    def __init__(self, kafka: StubKafka, gate: asyncio.Event) -> None:
        super().__init__(kafka)
        self._gate = gate

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        await self._gate.wait()
        return await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)


class _BrokenReader(StubConsumer):
    """A changelog reader whose broker is down, as right after a broker restart."""

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        raise KafkaConnectionError("the broker is restarting")


async def _held_order(kafka: StubKafka, settings: Settings, store: RunStore) -> TopicPartition:
    """A worker that held the order o3 of d3, wrote it to the changelog, committed its
    offer and died; returns the offers partition of d3."""
    first = own(stage_of(settings, Emitter(settings, store, kafka.producer())))
    offer(kafka, settings, "orders", "o3", date="d3")
    group = kafka.consumer(settings.topic_sensor_offers, group_id="correlator")
    await asyncio.wait_for(await first.handle(await group.getmany()), 5)
    tp = TopicPartition(settings.topic_sensor_offers, D3)
    await group.commit({tp: 1})
    return tp


async def _consuming(
    consumer: StubConsumer, stage: CorrelationStage, stop: asyncio.Event
) -> asyncio.Task[None]:
    work = consume_batches(consumer, stage.handle, stop=stop, name="correlator", ready=stage.ready)
    return asyncio.create_task(work)


async def test_offers_fetched_while_their_partition_is_restored_are_handled_after_the_replay(
    settings: Settings, store: RunStore, kafka: StubKafka
) -> None:
    # Given the changelog holds order o3 of d3, and the customers c3 of d3 is offered
    tp = await _held_order(kafka, settings, store)
    offer(kafka, settings, "customers", "c3", date="d3")
    # When a new worker is given the partition, and consumes while its replay is slow
    # (aiokafka fetches for a new assignment before it calls the listener)
    second = stage_of(settings, Emitter(settings, store, kafka.producer()))
    offers = kafka.consumer(settings.topic_sensor_offers, group_id="correlator")
    gate = asyncio.Event()
    recovery = StateRecovery(settings, second, lambda: _HeldReader(kafka, gate))
    recovery.attach(offers)
    stop = asyncio.Event()
    loop = await _consuming(offers, second, stop)
    await offers.polled(2)
    assigning = asyncio.create_task(recovery.on_partitions_assigned([tp]))
    await offers.polled(2)
    # Then nothing of the partition is handled or committed while the replay runs
    assert (second.offers, requests(kafka, settings), offers.commits) == (0, [], [])
    # And once the replay is done, c3 meets o3 and the run of both fires, once
    gate.set()
    await asyncio.wait_for(assigning, 5)
    await eventually(lambda: requests(kafka, settings), "the run of c3 and o3")
    [request] = requests(kafka, settings)
    assert sorted(e["id"] for e in request.events) == ["c3", "o3"]
    await eventually(lambda: offers.commits[-1:] == [{tp: 2}], "the commit of c3")
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_a_failed_restore_is_retried_and_the_partitions_offers_wait_for_it(
    settings: Settings, store: RunStore, kafka: StubKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(correlation_stage, "_RESTORE_RETRY", (0.01, 0.05))
    # Given the changelog holds order o3 of d3, and the customers c3 of d3 is offered
    tp = await _held_order(kafka, settings, store)
    offer(kafka, settings, "customers", "c3", date="d3")
    # When a new worker is given the partition while the broker cannot serve the replay
    second = stage_of(settings, Emitter(settings, store, kafka.producer()))
    offers = kafka.consumer(settings.topic_sensor_offers, group_id="correlator")
    readers: list[StubConsumer] = []

    def reader() -> StubConsumer:
        readers.append(_BrokenReader(kafka) if len(readers) < 2 else kafka.consumer())
        return readers[-1]

    recovery = StateRecovery(settings, second, reader)
    recovery.attach(offers)
    await recovery.on_partitions_assigned([tp])  # aiokafka would only log a raise here
    # Then the partition waits, paused, and its offers are not handled on an empty state
    assert (second.ready(tp), tp in offers.paused(), held(second)) == (False, True, {})
    stop = asyncio.Event()
    loop = await _consuming(offers, second, stop)
    await offers.polled(2)
    assert second.offers == 0
    # And the replay is tried again until it succeeds, then c3 meets o3
    await eventually(lambda: second.ready(tp), "the restore, tried again")
    assert len(readers) == 3 and tp not in offers.paused() and not recovery.retrying
    await eventually(lambda: requests(kafka, settings), "the run of c3 and o3")
    [request] = requests(kafka, settings)
    assert sorted(e["id"] for e in request.events) == ["c3", "o3"]
    stop.set()
    await asyncio.wait_for(loop, 5)


@pytest.fixture
async def retrying(
    settings: Settings, stage: CorrelationStage, kafka: StubKafka, monkeypatch: pytest.MonkeyPatch
) -> StateRecovery:
    """A recovery given D3 while the broker cannot serve its replay, on its second try."""
    monkeypatch.setattr(correlation_stage, "_RESTORE_RETRY", (0.01, 0.05))
    stage.logs.clear()
    readers: list[StubConsumer] = []

    def reader() -> StubConsumer:
        readers.append(_BrokenReader(kafka))
        return readers[-1]

    recovery = StateRecovery(settings, stage, reader)
    await recovery.on_partitions_assigned([TopicPartition(settings.topic_sensor_offers, D3)])
    await eventually(lambda: len(readers) >= 2, "a second try")
    assert recovery.retrying
    return recovery


async def test_a_revoke_ends_a_restore_that_is_being_retried(
    retrying: StateRecovery, stage: CorrelationStage, settings: Settings
) -> None:
    tp = TopicPartition(settings.topic_sensor_offers, D3)
    await retrying.on_partitions_revoked([tp])
    assert not retrying.retrying and not stage.ready(tp)


async def test_stopping_the_worker_ends_a_restore_that_is_being_retried(
    retrying: StateRecovery,
) -> None:
    await retrying.close()
    assert not retrying.retrying

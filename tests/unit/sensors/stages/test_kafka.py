"""The batch loop: a batch is committed only once its output landed, in order, with one batch
in flight at most; a failing batch is handled again, never skipped. And send_records."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from sensors.stages.kafka import Batch, consume_batches, send_records
from tests.fixtures.stub_kafka import StubConsumer, StubKafka, settle
from tests.fixtures.waits import eventually


class Handler:
    """Records each batch it is given and returns an output the test lands when it likes."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.outputs: list[asyncio.Future[None]] = []
        self.failures = 0  # how many of the next calls raise

    async def __call__(self, batch: Batch) -> Awaitable[Any]:
        self.batches.append(batch)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the store is down")
        output: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.outputs.append(output)
        return asyncio.shield(output)  # lands whatever becomes of whoever waits for it

    def offsets(self, n: int) -> list[list[int]]:
        """The offsets of the records of the ``n``-th batch (from 0), per partition."""
        return [[r.offset for r in records] for records in self.batches[n].values()]


IN = "in"
P0, P1 = TopicPartition(IN, 0), TopicPartition(IN, 1)


@pytest.fixture
def kafka() -> StubKafka:
    return StubKafka(partitions=2)


@pytest.fixture
def consumer(kafka: StubKafka) -> StubConsumer:
    return kafka.consumer(IN, group_id="stage")


@pytest.fixture
def handle() -> Handler:
    return Handler()


@pytest.fixture
async def loop(consumer: StubConsumer, handle: Handler) -> AsyncIterator[asyncio.Event]:
    """consume_batches running on ``consumer`` with ``handle``; set the event to stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        consume_batches(consumer, handle, stop=stop, name="test", retry_delay=0)
    )
    yield stop
    stop.set()
    for output in handle.outputs:
        if not output.done():
            output.set_result(None)
    await asyncio.wait_for(task, 5)


async def test_a_batch_is_committed_once_its_output_landed_and_not_before(
    kafka: StubKafka, consumer: StubConsumer, handle: Handler, loop: asyncio.Event
) -> None:
    # Given a batch of two records on one partition and one on the other, handled
    kafka.append(IN, b"a", partition=0)
    kafka.append(IN, b"b", partition=0)
    kafka.append(IN, b"c", partition=1)
    await consumer.polled(3)
    assert handle.offsets(0) == [[0, 1], [0]]
    # When its output has not landed, then nothing is committed
    assert consumer.commits == []
    # And once it has, the offsets after the batch are
    handle.outputs[0].set_result(None)
    await consumer.polled(2)
    assert consumer.commits == [{P0: 2, P1: 1}]


async def test_a_handler_returning_none_has_landed_its_output(kafka: StubKafka) -> None:
    consumer = kafka.consumer(IN, group_id="stage")
    stop = asyncio.Event()

    async def handle(batch: Batch) -> None:
        stop.set()  # the batch's output is written: nothing in flight

    kafka.append(IN, b"a", partition=1)
    await asyncio.wait_for(consume_batches(consumer, handle, stop=stop, name="test"), 5)
    assert consumer.commits == [{P1: 1}]


async def test_the_next_batch_is_handled_while_one_is_in_flight_but_not_a_third(
    kafka: StubKafka, consumer: StubConsumer, handle: Handler, loop: asyncio.Event
) -> None:
    # Given a first batch in flight
    kafka.append(IN, b"first")
    await consumer.polled(2)
    # When a second and then a third batch arrive
    kafka.append(IN, b"second")
    await consumer.polled(2)
    kafka.append(IN, b"third")
    await settle()
    # Then the second is handled, but the third waits for the first to land
    assert handle.offsets(1) == [[1]]
    assert len(handle.batches) == 2
    # And when the second lands first, nothing is committed yet
    handle.outputs[1].set_result(None)
    await settle()
    assert consumer.commits == []
    # Until the first lands: then both are committed, in order, and the third is handled
    handle.outputs[0].set_result(None)
    await consumer.polled(2)
    assert consumer.commits == [{P0: 1}, {P0: 2}]
    assert handle.offsets(2) == [[2]]


async def test_a_batch_whose_handler_fails_is_handled_again_and_never_skipped(
    kafka: StubKafka, consumer: StubConsumer, handle: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a handler that fails twice
    handle.failures = 2
    kafka.append(IN, b"a")
    stop = asyncio.Event()
    task = asyncio.create_task(
        consume_batches(consumer, handle, stop=stop, name="test", retry_delay=0)
    )
    # Then the same batch is handed to it until it succeeds, and committed once after that
    await consumer.polled(2)
    assert [handle.offsets(n) for n in range(3)] == [[[0]]] * 3
    handle.outputs[0].set_result(None)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert consumer.commits == [{P0: 1}]
    assert "test: handling a batch failed; retrying" in caplog.text


async def test_a_commit_that_fails_is_logged_and_the_loop_goes_on(
    kafka: StubKafka,
    consumer: StubConsumer,
    handle: Handler,
    loop: asyncio.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a rebalance that takes the partitions as the first batch is committed
    consumer.commit_error = CommitFailedError("rebalanced")
    kafka.append(IN, b"first")
    await consumer.polled(2)
    with caplog.at_level(logging.WARNING):
        handle.outputs[0].set_result(None)
        await consumer.polled(2)
    assert "test: commit failed" in caplog.text and "will be redelivered" in caplog.text
    # Then the next batch is still handled and committed
    kafka.append(IN, b"second")
    await consumer.polled(2)
    handle.outputs[1].set_result(None)
    await consumer.polled(2)
    assert consumer.commits == [{P0: 2}]


async def test_stopping_waits_for_the_batch_in_flight_and_commits_it(
    kafka: StubKafka, consumer: StubConsumer, handle: Handler
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consume_batches(consumer, handle, stop=stop, name="test"))
    kafka.append(IN, b"a")
    await consumer.polled(2)
    # When the loop is told to stop while the batch's output is in flight
    stop.set()
    await consumer.polled(1)
    await settle()
    # Then it waits for the output, and commits the batch before it returns
    assert not task.done()
    handle.outputs[0].set_result(None)
    await asyncio.wait_for(task, 5)
    assert consumer.commits == [{P0: 1}]


async def test_cancelling_the_loop_drops_the_commit_of_the_batch_in_flight(
    kafka: StubKafka, consumer: StubConsumer, handle: Handler
) -> None:
    task = asyncio.create_task(consume_batches(consumer, handle, stop=asyncio.Event(), name="test"))
    kafka.append(IN, b"a")
    await consumer.polled(2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Then the batch is not committed, even once its output lands: whoever consumes next
    # reads it again
    handle.outputs[0].set_result(None)
    await settle()
    assert consumer.commits == []


async def test_tick_runs_after_every_poll_even_an_empty_one(consumer: StubConsumer) -> None:
    stop = asyncio.Event()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 3:
            stop.set()

    async def handle(batch: Batch) -> None:
        raise AssertionError("there is no batch")

    await asyncio.wait_for(consume_batches(consumer, handle, stop=stop, name="test", tick=tick), 5)
    assert (ticks, consumer.polls) == (3, 3)


async def test_send_records_sends_a_batch_per_partition_and_another_when_one_is_full(
    kafka: StubKafka,
) -> None:
    # Given a producer whose batches hold two records
    producer = kafka.producer()
    producer.batch_capacity = 2
    records = [(0, b"k1", b"v1"), (1, b"k2", b"v2"), (0, b"k3", b"v3"), (0, None, b"v4")]
    # When records for two partitions are sent
    acks = await send_records(producer, "out", records)
    # Then each partition's records land in order, in as few produce batches as fit
    assert [(s.partition, s.values) for s in producer.sent] == [
        (0, [b"v1", b"v3"]),
        (0, [b"v4"]),
        (1, [b"v2"]),
    ]
    assert [(r.key, r.value) for r in kafka.records("out", 0)] == [
        (b"k1", b"v1"),
        (b"k3", b"v3"),
        (None, b"v4"),
    ]
    # And the futures returned are those of the batches' acknowledgements
    assert acks == [s.ack for s in producer.sent]


async def test_a_stage_waiting_long_for_a_batch_to_land_says_where_it_waits(
    kafka: StubKafka,
    consumer: StubConsumer,
    handle: Handler,
    loop: asyncio.Event,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The nemesis saw stages stop handling anything for minutes after a worker was paused
    # or the broker restarted, and said nothing: this line tells where they wait
    monkeypatch.setattr("sensors.stages.kafka._STALLED", 0.05)
    # Given a batch whose output never lands, and a next batch behind it
    kafka.append(IN, b"first")
    await consumer.polled(2)
    kafka.append(IN, b"second")
    # Then the stage says, again and again, that it waits, and where
    said = await eventually(
        lambda: [r.getMessage() for r in caplog.records if "has not landed" in r.getMessage()][1:],
        "two lines about the stalled batch",
        timeout=5,
    )
    assert "it waits in _commit_after (" in said[0], said
    assert "test: the previous batch has not landed" in said[0]


async def test_a_stage_that_reads_nothing_while_its_partitions_have_records_says_so(
    kafka: StubKafka,
    consumer: StubConsumer,
    handle: Handler,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A nemesis schedule saw a stage read nothing for minutes while its partition had
    # records, and say nothing: this line tells which partition lags, and where it stands
    monkeypatch.setattr("sensors.stages.kafka._STALLED", 0.05)
    # Given a stage whose consumer stopped fetching one partition that has records
    kafka.append(IN, b"first", partition=1)
    consumer.pause(P1)
    stop = asyncio.Event()
    task = asyncio.create_task(consume_batches(consumer, handle, stop=stop, name="test"))
    # Then it says which partition lags, and where the consumer stands in it
    said = await eventually(
        lambda: [r.getMessage() for r in caplog.records if "read nothing" in r.getMessage()],
        "a line about the partition it does not read",
        timeout=5,
    )
    assert "in[1] (paused) is at offset 0 of 1" in said[0], said
    assert "in[0]" not in said[0]  # caught up: nothing to say of it
    stop.set()
    await asyncio.wait_for(task, 5)
    assert handle.batches == []


async def test_a_stage_that_is_caught_up_reads_nothing_without_a_word(
    kafka: StubKafka,
    consumer: StubConsumer,
    handle: Handler,
    loop: asyncio.Event,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sensors.stages.kafka._STALLED", 0.01)
    # Given a stage that handled everything there is
    kafka.append(IN, b"only")
    await consumer.polled(20)  # many empty reads, each past the idle limit
    assert len(handle.batches) == 1
    # Then it says nothing about reading nothing
    assert not [r for r in caplog.records if "read nothing" in r.getMessage()]

"""The launch stage: a batch of run requests admits each run once, as QUEUED, whatever the
launch capacity; the starter then claims QUEUED runs oldest first and hands them to their
launcher as it has room. A malformed request is skipped, a redelivered one starts nothing
more."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import TopicPartition

from sensors.runs.models import NewRun, RunRecord
from sensors.runs.objects import ObjectStore
from sensors.runs.phases import WorkflowPhase
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from sensors.stages.kafka import consume_batches
from sensors.stages.launch_stage import LaunchStage
from tests.fixtures.runs import new_run
from tests.fixtures.stub_kafka import StubKafka
from tests.fixtures.tracing import Traced
from tests.fixtures.waits import eventually
from triggers import tracing
from triggers.settings import Settings

REQUESTS = "run-requests"


class Launcher:
    """The launch stage's side of a launcher (sensors.launchers.base.Launcher): ``slots``
    free slots, and the runs it launched, in order. Running a run is the launchers' own
    tests' business."""

    def __init__(self, slots: int = 100) -> None:
        self.slots = slots
        self.launched: list[RunRecord] = []
        self._room: list[Callable[[], None]] = []

    def reserve(self) -> bool:
        if self.slots <= 0:
            return False
        self.slots -= 1
        return True

    def release(self) -> None:
        self.slots += 1
        for callback in self._room:
            callback()

    def on_room(self, callback: Callable[[], None]) -> None:
        self._room.append(callback)

    async def launch(self, run: RunRecord) -> None:
        self.launched.append(run)

    async def adopt(self) -> list[str]:
        return []

    async def close(self) -> None:
        pass


@pytest.fixture
def launcher() -> Launcher:
    return Launcher()


@pytest.fixture
def stage(settings: Settings, store: RunStore, launcher: Launcher) -> LaunchStage:
    service = RunService(settings, store, ObjectStore(settings.objects_root))
    return LaunchStage(store, service, lambda target: launcher)


def request(kafka: StubKafka, run: NewRun, *, partition: int = 0) -> None:
    kafka.append(
        REQUESTS, run.model_dump_json().encode(), key=run.name.encode(), partition=partition
    )


async def test_each_requested_run_is_created_once_claimed_and_launched(
    stage: LaunchStage, launcher: Launcher, store: RunStore, kafka: StubKafka
) -> None:
    # Given a batch with two requests, one of them twice
    request(kafka, new_run("flow-a"))
    request(kafka, new_run("flow-b"), partition=1)
    request(kafka, new_run("flow-a"))
    # When the stage handles it
    assert await stage.handle(kafka.batch(REQUESTS)) is None  # done: nothing in flight
    await stage.start_queued()
    # Then each run was created once and launched once, claimed by this worker
    assert sorted(r.name for r in launcher.launched) == ["flow-a", "flow-b"]
    assert (stage.created, stage.duplicates) == (2, 1)
    for run in await store.list_runs():
        assert (run.phase, run.claimed_by) == (WorkflowPhase.RUNNING, stage.worker)


async def test_a_malformed_run_request_is_skipped_and_the_rest_of_the_batch_launched(
    stage: LaunchStage, launcher: Launcher, kafka: StubKafka, caplog: pytest.LogCaptureFixture
) -> None:
    kafka.append(REQUESTS, b'{"name": "no flow"}')
    request(kafka, new_run("flow-a"))
    await stage.handle(kafka.batch(REQUESTS))
    await stage.start_queued()
    assert [r.name for r in launcher.launched] == ["flow-a"]
    assert f"skipped malformed run request {REQUESTS}[0]@0" in caplog.text


async def test_a_redelivered_request_starts_nothing_more(
    stage: LaunchStage, launcher: Launcher, kafka: StubKafka
) -> None:
    request(kafka, new_run("flow-a"))
    await stage.handle(kafka.batch(REQUESTS))
    await stage.start_queued()
    # When the same batch comes again, as after a rebalance before its commit
    await stage.handle(kafka.batch(REQUESTS))
    await stage.start_queued()
    assert [r.name for r in launcher.launched] == ["flow-a"]
    assert (stage.created, stage.duplicates) == (1, 1)


async def test_a_request_whose_events_another_run_consumed_is_skipped_and_the_batch_goes_on(
    stage: LaunchStage,
    launcher: Launcher,
    store: RunStore,
    kafka: StubKafka,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a run that consumed event e1, decided by the partition's new owner
    consumed = {"consumes": ["e1"]}
    await store.create_run(NewRun.model_validate({**new_run("flow-a").model_dump(), **consumed}))
    # When a stale owner's request of another name from e1 comes, then another request
    stale = NewRun.model_validate({**new_run("flow-stale").model_dump(), **consumed})
    request(kafka, stale)
    request(kafka, new_run("flow-b"))
    await stage.handle(kafka.batch(REQUESTS))
    await stage.start_queued()
    # Then the stale one is skipped with a warning, and the next one is created and launched
    # (with flow-a, which waited QUEUED)
    assert sorted(r.name for r in launcher.launched) == ["flow-a", "flow-b"]
    assert (stage.created, stage.fenced) == (1, 1)
    assert sorted(run.name for run in await store.list_runs()) == ["flow-a", "flow-b"]
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "'flow-stale' was not created" in warning.getMessage()
    assert "'e1' by run 'flow-a'" in warning.getMessage()


async def test_a_run_queued_but_never_claimed_is_launched_when_requested_again(
    stage: LaunchStage, launcher: Launcher, store: RunStore, kafka: StubKafka
) -> None:
    # Given a run created by an earlier worker that died before claiming it
    await store.create_run(new_run("flow-a"))
    # When its request is delivered again, then it starts here
    request(kafka, new_run("flow-a"))
    await stage.handle(kafka.batch(REQUESTS))
    await stage.start_queued()
    assert [r.name for r in launcher.launched] == ["flow-a"]
    assert stage.created == 0


async def test_a_run_over_its_trigger_limit_waits_queued_until_there_is_room(
    stage: LaunchStage, launcher: Launcher, store: RunStore, kafka: StubKafka
) -> None:
    # Given two requests of a trigger that runs one at a time
    for name in ("flow-a", "flow-b"):
        request(kafka, new_run(name).model_copy(update={"max_concurrency": 1}))
    await stage.handle(kafka.batch(REQUESTS))
    await stage.start_queued()
    # Then one starts, and the other waits
    [first] = launcher.launched
    [waiting] = await store.list_runs(phase=WorkflowPhase.QUEUED)
    assert waiting.name != first.name
    # And once the first ends, the next look starts the other
    await store.transition(
        first.project, first.domain, first.name, WorkflowPhase.SUCCEEDED, expected=first.phase
    )
    await stage.start_queued()
    assert [r.name for r in launcher.launched] == [first.name, waiting.name]


async def test_a_batch_is_admitted_and_committed_while_the_launcher_has_no_room(
    stage: LaunchStage, launcher: Launcher, store: RunStore, kafka: StubKafka
) -> None:
    # Given the stage consuming run requests, and a launcher whose slots are all taken
    launcher.slots = 0
    consumer = kafka.consumer(REQUESTS, group_id="launcher")
    stop = asyncio.Event()
    loop = asyncio.create_task(consume_batches(consumer, stage.handle, stop=stop, name="launcher"))
    stage.start()
    # When three runs are requested
    for name in ("flow-a", "flow-b", "flow-c"):
        request(kafka, new_run(name))
    # Then they are QUEUED, visible in the store, and the batch is committed
    await eventually(lambda: consumer.commits, "the commit of the batch")
    assert consumer.commits[-1] == {TopicPartition(REQUESTS, 0): 3}
    queued = await store.list_runs(phase=WorkflowPhase.QUEUED)
    assert sorted(r.name for r in queued) == ["flow-a", "flow-b", "flow-c"]
    assert launcher.launched == []
    # And as slots free, they start, oldest first
    launcher.release()
    await eventually(lambda: len(launcher.launched) == 1, "the oldest run to start")
    launcher.release()
    launcher.release()
    await eventually(lambda: len(launcher.launched) == 3, "the other two to start")
    assert [r.name for r in launcher.launched] == ["flow-a", "flow-b", "flow-c"]
    stop.set()
    await asyncio.wait_for(loop, 5)
    await stage.close()


async def test_runs_admitted_by_another_worker_start_here_when_this_one_has_room(
    settings: Settings, store: RunStore, launcher: Launcher, kafka: StubKafka
) -> None:
    # Given two workers' launch stages on one store, the first without room
    service = RunService(settings, store, ObjectStore(settings.objects_root))
    full = Launcher(slots=0)
    first = LaunchStage(store, service, lambda target: full)
    second = LaunchStage(store, service, lambda target: launcher)
    request(kafka, new_run("flow-a"))
    # When the first admits the run
    await first.handle(kafka.batch(REQUESTS))
    assert await first.start_queued() == 1 and full.launched == []
    # Then the second starts it, claimed by itself, and the first never does
    await second.start_queued()
    [run] = launcher.launched
    assert run.claimed_by == second.worker
    full.slots = 1
    await first.start_queued()
    assert full.launched == [] and full.slots == 1


async def test_a_run_that_cannot_start_keeps_its_place_in_the_queue(
    stage: LaunchStage, launcher: Launcher, store: RunStore, kafka: StubKafka
) -> None:
    # Given one slot, and three runs in the order they were requested
    launcher.slots = 1
    for name in ("flow-a", "flow-b", "flow-c"):
        request(kafka, new_run(name))
        await stage.handle(kafka.batch(REQUESTS))
        kafka.topics.clear()
    # When the starter looks three times, a slot freeing in between
    for _ in range(3):
        await stage.start_queued()
        launcher.release()
    # Then they started oldest first
    assert [r.name for r in launcher.launched] == ["flow-a", "flow-b", "flow-c"]


TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_traced_requests_admission_is_a_span_of_its_trace_created_or_duplicate(
    stage: LaunchStage, store: RunStore, kafka: StubKafka, traced: Traced
) -> None:
    # Given a request in a trace, delivered twice, and one in no trace
    traced_run = new_run("flow-a").model_copy(update={"traceparent": TRACE, "tracestate": "a=1"})
    request(kafka, traced_run)
    request(kafka, new_run("flow-b"))
    # When the stage admits the batch, and then the batch again
    await stage.handle(kafka.batch(REQUESTS))
    await stage.handle(kafka.batch(REQUESTS))
    # Then each admission of the traced request is a child of its span, and says how it went
    spans = traced.spans.get_finished_spans()
    assert [s.name for s in spans] == ["admit flow", "admit flow"]
    for span in spans:
        assert span.parent is not None and format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
        assert format(span.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert span.attributes is not None
        assert span.attributes["tripwire.run.name"] == "flow-a"
        assert span.attributes["tripwire.sensor.id"] == "flow.trigger"
    assert [s.attributes and s.attributes["tripwire.admission"] for s in spans] == [
        "created",
        "duplicate",
    ]
    # And the run keeps the trace context it joins
    run = await store.get_run("flow-a")
    assert (run.traceparent, run.tracestate) == (TRACE, "a=1")


async def test_without_spans_an_admission_starts_none(
    stage: LaunchStage, kafka: StubKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "spans", False)
    monkeypatch.setattr(tracing, "span", _no_span)
    request(kafka, new_run("flow-a").model_copy(update={"traceparent": TRACE}))
    await stage.handle(kafka.batch(REQUESTS))
    assert stage.created == 1


def _no_span(*args: object, **kwargs: object) -> None:
    raise AssertionError("a span was started while tracing is off")

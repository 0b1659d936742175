"""The launcher stage: a batch of run requests creates each run once, claims it and hands it to
its launcher; a malformed request is skipped, a redelivered one starts nothing more."""

from __future__ import annotations

import asyncio

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
from tests.fixtures.stub_kafka import StubKafka, settle
from triggers.settings import Settings

REQUESTS = "run-requests"


class Launcher:
    """Records the runs it launched; holds each launch until ``opened`` is set."""

    def __init__(self) -> None:
        self.launched: list[RunRecord] = []
        self.asked = asyncio.Event()
        self.opened = asyncio.Event()
        self.opened.set()

    async def launch(self, run: RunRecord) -> None:
        self.asked.set()
        await self.opened.wait()
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
    assert [r.name for r in launcher.launched] == ["flow-a"]
    assert f"skipped malformed run request {REQUESTS}[0]@0" in caplog.text


async def test_a_redelivered_request_starts_nothing_more(
    stage: LaunchStage, launcher: Launcher, kafka: StubKafka
) -> None:
    request(kafka, new_run("flow-a"))
    await stage.handle(kafka.batch(REQUESTS))
    # When the same batch comes again, as after a rebalance before its commit
    await stage.handle(kafka.batch(REQUESTS))
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
    # Then the stale one is skipped with a warning, and the next one is created and launched
    assert [r.name for r in launcher.launched] == ["flow-b"]
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
    assert [r.name for r in launcher.launched] == ["flow-a"]
    assert stage.created == 0


async def test_a_run_over_its_trigger_limit_waits_queued_until_there_is_room(
    stage: LaunchStage, launcher: Launcher, store: RunStore, kafka: StubKafka
) -> None:
    # Given two requests of a trigger that runs one at a time
    for name in ("flow-a", "flow-b"):
        request(kafka, new_run(name).model_copy(update={"max_concurrency": 1}))
    await stage.handle(kafka.batch(REQUESTS))
    # Then one starts, and the other waits
    [first] = launcher.launched
    [waiting] = await store.list_runs(phase=WorkflowPhase.QUEUED)
    assert waiting.name != first.name
    # And once the first ends, the next look starts the other
    await store.transition(
        first.project, first.domain, first.name, WorkflowPhase.SUCCEEDED, expected=first.phase
    )
    await stage.tick()
    assert [r.name for r in launcher.launched] == [first.name, waiting.name]


async def test_the_batch_is_committed_only_after_its_runs_were_handed_to_their_launcher(
    stage: LaunchStage, launcher: Launcher, store: RunStore, kafka: StubKafka
) -> None:
    # Given the stage consuming run requests, and a launcher that is slow to take runs
    consumer = kafka.consumer(REQUESTS, group_id="launcher")
    stop = asyncio.Event()
    loop = asyncio.create_task(consume_batches(consumer, stage.handle, stop=stop, name="launcher"))
    launcher.opened.clear()
    request(kafka, new_run("flow-a"))
    # When the run is created, claimed and being launched
    await asyncio.wait_for(launcher.asked.wait(), 5)
    await settle()
    # Then the batch is not committed
    assert consumer.commits == []
    # And once the launcher took it, it is
    launcher.opened.set()
    await consumer.polled(2)
    assert consumer.commits == [{TopicPartition(REQUESTS, 0): 1}]
    stop.set()
    await asyncio.wait_for(loop, 5)

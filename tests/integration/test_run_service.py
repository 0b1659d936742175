"""The run service on each store backend and object store (a folder, and S3 on moto)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from sensors.runs.deploy import deploy
from sensors.runs.models import NewRun
from sensors.runs.objects import ObjectStore
from sensors.runs.phases import WorkflowPhase
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from sensors.stages.kafka import ensure_topics, new_consumer, new_producer
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.errors import ConfigurationError, RunNotFoundError, TriggerError
from triggers.settings import Settings

pytestmark = pytest.mark.integration


@trigger(event="orders_loaded")
def load_report(day: str, rows: int = 0) -> None: ...


@pytest.fixture(params=["folder", "s3"])
def objects_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "folder":
        return (tmp_path / "objects").as_uri()
    return str(request.getfixturevalue("s3_url"))


@pytest.fixture
async def service(
    run_store: RunStore, kafka_bootstrap: str, unique_name: str, tmp_path: Path, objects_url: str
) -> AsyncIterator[RunService]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        home=tmp_path,
        topic_run_requests=f"{unique_name}.run-requests",
        topic_partitions=1,
        objects_url=objects_url,
    )
    await ensure_topics(settings, [settings.topic_run_requests])
    await deploy(run_store, [flow_spec(load_report)], project="p", domain="d")
    producer = new_producer(settings)
    await producer.start()
    try:
        yield RunService(settings, run_store, ObjectStore(settings.objects_root), producer)
    finally:
        await producer.stop()


async def enqueued(service: RunService) -> list[NewRun]:
    settings = service._settings
    consumer = new_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic_run_requests, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        requests: list[NewRun] = []
        while len(requests) < end:
            for r in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                requests.append(NewRun.model_validate_json(r.value or b""))
        return requests
    finally:
        await consumer.stop()


async def test_a_created_run_is_queued_with_its_inputs_kept_and_enqueued_once(
    service: RunService, run_store: RunStore, objects_url: str
) -> None:
    run, created = await service.create(
        "load_report", {"day": "2026-11-23", "rows": "12"}, project="p", domain="d"
    )
    assert created and run.phase == WorkflowPhase.QUEUED
    assert run.name.startswith("load-report-") and run.flow_revision == 1
    assert run.parameters == {"day": "2026-11-23", "rows": 12}  # coerced to the flow's types
    assert run.inputs_uri is not None and run.inputs_uri.startswith(objects_url)
    inputs: dict[str, Any] = await ObjectStore(objects_url).get_json(run.inputs_uri)
    assert inputs == {"parameters": {"day": "2026-11-23", "rows": 12}, "events": []}
    assert [r.name for r in await enqueued(service)] == [run.name]


async def test_creating_a_named_run_again_returns_it_and_starts_nothing(
    service: RunService,
) -> None:
    first, created = await service.create(
        "load_report", {"day": "2026-11-23"}, name="nightly-1", project="p", domain="d"
    )
    again, created_again = await service.create(
        "load_report", {"day": "1999-01-01"}, name="nightly-1", project="p", domain="d"
    )
    assert (created, created_again) == (True, False)
    assert again.inputs_uri == first.inputs_uri and again.parameters == {
        "day": "2026-11-23",
        "rows": 0,
    }
    # Still QUEUED (no launcher here), so it is enqueued again in case the first was lost:
    # a launcher claims a run once, whatever number of requests it reads.
    assert [r.name for r in await enqueued(service)] == ["nightly-1", "nightly-1"]


async def test_a_run_that_started_is_not_enqueued_again(
    service: RunService, run_store: RunStore
) -> None:
    await service.create("load_report", {"day": "d"}, name="once", project="p", domain="d")
    await run_store.transition("p", "d", "once", WorkflowPhase.RUNNING)
    _, created = await service.create(
        "load_report", {"day": "d"}, name="once", project="p", domain="d"
    )
    assert not created
    assert [r.name for r in await enqueued(service)] == ["once"]


async def test_twenty_concurrent_creates_of_one_name_give_one_run(service: RunService) -> None:
    results = await asyncio.gather(
        *(
            service.create("load_report", {"day": "d"}, name="once", project="p", domain="d")
            for _ in range(20)
        )
    )
    assert sum(created for _, created in results) == 1
    assert {run.inputs_uri for run, _ in results} == {results[0][0].inputs_uri}


async def test_bad_requests_are_refused_with_the_reason(service: RunService) -> None:
    with pytest.raises(TriggerError, match="'day' is required"):
        await service.create("load_report", {}, project="p", domain="d")
    with pytest.raises(TriggerError, match="rows"):
        await service.create("load_report", {"day": "x", "rows": "many"}, project="p", domain="d")
    with pytest.raises(RunNotFoundError, match="tripwire deploy"):
        await service.create("nope", {}, project="p", domain="d")
    with pytest.raises(ConfigurationError, match="invalid run name"):
        await service.create("load_report", {"day": "x"}, name="Bad_Name", project="p", domain="d")


async def test_recover_reruns_the_same_inputs_and_revision_as_r1_then_r2(
    service: RunService, run_store: RunStore
) -> None:
    run, _ = await service.create(
        "load_report", {"day": "2026-11-23"}, name="daily", project="p", domain="d"
    )
    with pytest.raises(ConfigurationError, match="is QUEUED, not finished"):
        await service.recover("daily", project="p", domain="d")
    await run_store.transition("p", "d", "daily", WorkflowPhase.RUNNING)
    await run_store.transition("p", "d", "daily", WorkflowPhase.FAILED)

    @trigger(event="orders_loaded", retries=3)
    def load_report(day: str, rows: int = 0) -> None: ...

    await deploy(run_store, [flow_spec(load_report)], project="p", domain="d")
    first = await service.recover("daily", project="p", domain="d")
    await run_store.request_abort("p", "d", "daily-r1", "not needed")  # final: recoverable
    second = await service.recover("daily-r1", project="p", domain="d")
    assert (first.name, second.name) == ("daily-r1", "daily-r2")
    assert first.parameters == run.parameters and first.flow_revision == 1
    assert first.recovered_from == "daily" and first.inputs_uri != run.inputs_uri
    with pytest.raises(ConfigurationError, match="create a new run instead"):
        await service.recover("daily", project="p", domain="d", parameters={"day": "other"})
    assert [r.name for r in await enqueued(service)] == ["daily", "daily-r1", "daily-r2"]


def test_an_object_store_without_its_driver_names_the_extra() -> None:
    with pytest.raises(ConfigurationError, match="needs support for nosuch://"):
        ObjectStore("nosuch://bucket")


async def test_a_run_by_hand_takes_the_retries_and_timeout_of_the_flows_trigger(
    service: RunService, run_store: RunStore
) -> None:
    @trigger(event="nightly", retries=2, retry_backoff="30s", timeout="5m")
    def guarded(day: str = "") -> None: ...

    await deploy(run_store, [flow_spec(guarded)], project="p", domain="d")
    run, _ = await service.create("guarded", {}, project="p", domain="d")
    assert (run.retries, run.retry_backoff_seconds, run.timeout_seconds) == (2, 30.0, 300.0)


async def test_a_recovered_run_keeps_the_trace_context_of_the_one_it_recovers(
    service: RunService, run_store: RunStore
) -> None:
    # Given a traced run (a sensor's) that failed
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    request = NewRun(
        project="p",
        domain="d",
        name="traced",
        flow="load_report",
        entrypoint={"function": "load_report", "module": "m"},
        parameters={"day": "2026-11-23", "rows": 0},
        events=[],
        traceparent=trace,
        tracestate="rojo=1",
    )
    await service.submit(request)
    await run_store.transition("p", "d", "traced", WorkflowPhase.RUNNING)
    await run_store.transition("p", "d", "traced", WorkflowPhase.FAILED)
    # When it is recovered
    recovered = await service.recover("traced", project="p", domain="d")
    # Then the new run is the same story: the same trace, and its request says so too
    assert (recovered.traceparent, recovered.tracestate) == (trace, "rojo=1")
    [*_, enqueued_again] = await enqueued(service)
    assert (enqueued_again.name, enqueued_again.traceparent) == ("traced-r1", trace)

"""publish -> sensor -> run request -> launcher -> run, on the real broker and store."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.phases import ErrorKind, WorkflowPhase
from sensors.runs.sensor_records import list_trigger_failures
from sensors.runs.store import RunStore
from tests.fixtures.engine import finished_run
from tests.fixtures.waits import eventually
from triggers import PublishError, publish, safe_publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration


async def test_default_matching_fills_parameters_and_current_sees_the_run(
    store: RunStore, tmp_path: Path
) -> None:
    # Given a flow triggered by data_updated with parameters table, rows, day
    out = tmp_path / "current.json"
    # When an event carries fields of those names (rows as a string, to be coerced)
    event_id = await publish.aio(
        "data_updated",
        {"table": "orders", "rows": "42", "day": "2026-11-23", "other": 1, "out": str(out)},
    )
    # Then one run succeeds with the coerced parameters
    run = await finished_run(store, event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert run.flow == "refresh"
    assert run.parameters == {"table": "orders", "rows": 42, "day": "2026-11-23", "out": str(out)}
    assert [(e["name"], e["id"]) for e in run.events] == [("data_updated", event_id)]
    assert run.started_at is not None and run.finished_at is not None
    # And inside the run, triggers.current saw the run name, parameters and event
    seen = json.loads(out.read_text())
    assert seen["run_name"] == run.name
    assert seen["parameters"]["rows"] == 42
    assert seen["event"] == event_id
    assert seen["events"][0]["payload"]["other"] == 1


async def test_explicit_mapping_reads_fields_and_jsonpaths_and_ignores_same_named_fields(
    store: RunStore, tmp_path: Path
) -> None:
    out = tmp_path / "current.json"
    event_id = publish(
        "features_ready",
        {
            "how_many_days": 7,
            "meta": {"timestamp": "2026-11-23T06:00:00Z"},
            "table": "not mapped, so not used",
            "out": str(out),
        },
    )
    run = await finished_run(store, event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert run.parameters["window"] == 7
    assert run.parameters["latest"] == "2026-11-23T06:00:00Z"
    assert run.parameters["table"] == "unmapped"  # explicit mapping turns default matching off


async def test_a_value_of_the_wrong_type_records_a_failure_and_starts_no_run(
    engine: Engine, store: RunStore
) -> None:
    # When rows cannot be an int
    bad = await publish.aio("data_updated", {"rows": "many"})
    # Then a trigger failure names the parameter, the type and the value
    failures = await eventually(
        lambda: list_trigger_failures(store, sensor_id="refresh.trigger"), "a trigger failure"
    )
    assert failures[0].event_id == bad
    assert "rows" in failures[0].reason and "int" in failures[0].reason
    assert '"many"' in failures[0].reason
    # And the worker keeps going: a good event after it still runs
    good = await publish.aio("data_updated", {"rows": 1})
    await finished_run(store, good)
    assert not [r for r in await store.list_runs() if any(e["id"] == bad for e in r.events)]


async def test_a_duplicate_event_id_creates_one_run(engine: Engine, store: RunStore) -> None:
    event_id = str(uuid.uuid4())
    for _ in range(3):
        await publish.aio("data_updated", {"rows": 5}, id=event_id)
    first = await finished_run(store, event_id)
    # A later event has passed through both stages once it has finished
    await finished_run(store, await publish.aio("data_updated", {"rows": 6}))
    runs = [r for r in await store.list_runs() if any(e["id"] == event_id for e in r.events)]
    assert [r.name for r in runs] == [first.name]
    assert engine.launch_stage is not None and engine.launch_stage.duplicates >= 1


async def test_a_replayed_run_request_does_not_start_a_second_run(
    engine: Engine, store: RunStore, engine_env: dict[str, str]
) -> None:
    event_id = await publish.aio("data_updated", {"rows": 7})
    run = await finished_run(store, event_id)
    # When the same run request is produced again (a crash before commit, a replay)
    from sensors.runs.models import NewRun

    request = NewRun.model_validate(run.model_dump(include=set(NewRun.model_fields)))
    producer = AIOKafkaProducer(bootstrap_servers=engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        await producer.send_and_wait(
            engine_env["TRIPWIRE_TOPIC_RUN_REQUESTS"],
            request.model_dump_json().encode(),
            key=run.name.encode(),
        )
    finally:
        await producer.stop()
    assert engine.launch_stage is not None
    before = engine.launch_stage.duplicates
    await eventually(lambda: engine.launch_stage.duplicates > before, "the replay to be read")
    # Then the finished run is untouched
    again = await store.get_run(run.name)
    assert again.phase == WorkflowPhase.SUCCEEDED
    assert again.updated_at == run.updated_at


async def test_a_raising_flow_fails_with_kind_user_and_keeps_the_traceback(store: RunStore) -> None:
    event_id = await publish.aio("explode", {"reason": "disk full"})
    run = await finished_run(store, event_id)
    assert run.phase == WorkflowPhase.FAILED
    assert run.error is not None and run.error.kind == ErrorKind.USER
    assert run.error.message == "RuntimeError: flow failed on purpose: disk full"
    assert run.error.traceback is not None and "core_flows.py" in run.error.traceback


async def test_a_malformed_record_is_skipped_and_the_worker_keeps_running(
    engine: Engine, store: RunStore, engine_env: dict[str, str]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        topic = engine_env["TRIPWIRE_TOPIC_EVENTS"]
        await producer.send_and_wait(topic, b"not a cloudevent", key=b"data_updated")
        await producer.send_and_wait(
            topic,
            b"[1, 2]",
            key=b"data_updated",
            headers=[("ce_type", b"data_updated"), ("ce_id", b"x1"), ("ce_specversion", b"1.0")],
        )
    finally:
        await producer.stop()
    event_id = await publish.aio("data_updated", {"rows": 8})
    await finished_run(store, event_id)
    assert engine.sensor_stage is not None and engine.sensor_stage.stats.undecodable == 2


async def test_publish_to_a_broker_that_is_down_fails_in_bounded_time_naming_the_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("TRIPWIRE_PUBLISH_TIMEOUT", "3")
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"127\.0\.0\.1:1") as caught:
        await asyncio.to_thread(publish, "data_updated", {"rows": 1})
    assert time.monotonic() - started < 3 + 2  # the bound, with slack for a slow machine
    assert "TRIPWIRE_KAFKA_BOOTSTRAP" in str(caught.value)
    # And safe_publish logs and returns None instead of raising
    assert await safe_publish.aio("data_updated", {"rows": 1}) is None


async def test_a_run_process_that_dies_fails_with_kind_system(store: RunStore) -> None:
    event_id = await publish.aio("crash")
    run = await finished_run(store, event_id)
    assert run.phase == WorkflowPhase.FAILED
    assert run.error is not None and run.error.kind == ErrorKind.SYSTEM
    assert run.error.message == "the run's process was killed by SIGKILL"


async def test_a_flow_whose_file_vanished_after_deploy_fails_with_kind_system(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    flow_file = tmp_path / "gone.py"
    flow_file.write_text(
        "from triggers import trigger\n\n@trigger(event='data_updated')\ndef gone() -> None: ...\n"
    )
    async with Engine(Settings(), discover_flows([flow_file])) as engine:
        await engine.wait_ready(timeout=30)
        flow_file.unlink()
        event_id = await publish.aio("data_updated")
        assert engine.store is not None
        run = await finished_run(engine.store, event_id)
    assert run.phase == WorkflowPhase.FAILED
    assert run.error is not None and run.error.kind == ErrorKind.SYSTEM
    assert "cannot start flow 'gone'" in run.error.message
    assert "gone.py does not exist" in run.error.message

"""A faust app beside the engine: an agent publishes an event through the app's own producer,
the engine runs the flow it triggers, and another agent reads that run's lifecycle events,
typed. The app is the example, examples/_faust/sales_loader.py, in the faust virtualenv."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.phases import WorkflowPhase
from tests.fixtures.engine import finished_run
from tests.fixtures.faust_venv import ROOT, faust_env, faust_python
from tests.fixtures.processes import ready
from triggers.envelope import Envelope, KafkaRecord, decode, encode
from triggers.settings import Settings

pytestmark = pytest.mark.integration

APP = ROOT / "examples" / "_faust" / "sales_loader.py"
FLOWS = ROOT / "examples" / "fresh_data.py"  # refresh_report, on data_updated


@contextmanager
def faust_worker(python: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The example app's worker, its output in ``log``; stopped on the way out."""
    with (
        log.open("ab") as out,
        subprocess.Popen(
            [python, APP, "worker", "--without-web", "--loglevel", "info"],
            cwd=log.parent,  # faust keeps its data folder in the working folder
            env=faust_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


async def published(settings: Settings, event_id: str) -> KafkaRecord:
    """The record of event ``event_id`` on the events topic, as it lies there."""
    reader = AIOKafkaConsumer(
        settings.topic_events,
        bootstrap_servers=settings.require_bootstrap(),
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        async with asyncio.timeout(30):
            async for record in reader:
                if ("ce_id", event_id.encode()) in record.headers:
                    assert record.key is not None and record.value is not None
                    return KafkaRecord(record.key, record.value, list(record.headers))
    except TimeoutError:
        pass
    finally:
        await reader.stop()
    pytest.fail(f"event {event_id} is not on {settings.topic_events} after 30s")


async def test_a_faust_app_announces_fresh_data_and_reads_how_the_run_ended(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    python = faust_python()
    log = tmp_path / "faust.log"
    # Given the example faust app's worker, and an engine with the flow its event triggers
    with faust_worker(python, log) as worker:
        async with Engine(Settings(), discover_flows([FLOWS])) as engine:
            await engine.wait_ready(timeout=30)
            await ready(worker, log, says=b"[^Worker]: Ready")
            # When a load reaches the app's agent `announce`
            load = {"id": "load-1", "table": "sales", "rows": 1234, "day": "2026-11-23"}
            sent = subprocess.run(
                [python, APP, "send", "@announce", json.dumps(load)],
                cwd=tmp_path,
                env=faust_env(),
                capture_output=True,
                timeout=60,
            )
            assert sent.returncode == 0, sent.stderr.decode()
            # Then the engine runs refresh_report on the event the agent published
            assert engine.store is not None
            run = await finished_run(engine.store, "load-1:data_updated")
            assert run.flow == "refresh_report" and run.phase == WorkflowPhase.SUCCEEDED
            assert run.parameters == {"table": "sales", "rows": 1234, "day": "2026-11-23"}
            # And the agent `follow` read that run's success as a typed RunEvent
            await ready(worker, log, says=f"run {run.name} of refresh_report SUCCEEDED at".encode())
            # And the app's producer wrote the very record publish() writes
            record = await published(Settings(), "load-1:data_updated")
            event = decode(record.value, record.headers)
            assert record == encode(
                Envelope(
                    name="data_updated",
                    id="load-1:data_updated",
                    source=Settings().source,
                    time=event.time,
                    payload={"table": "sales", "rows": 1234, "day": "2026-11-23"},
                )
            )

"""`tripwire worker`: the production entry point, against a given broker and store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import FLOWS, finished_run
from tests.fixtures.waits import eventually
from triggers import publish

pytestmark = pytest.mark.integration


async def test_a_worker_runs_flows_until_sigterm_then_exits_cleanly(
    engine_env: dict[str, str], store_url: str, tmp_path: Path
) -> None:
    # Given a worker process on the shared broker and a store on each backend
    env = {**os.environ, "TRIPWIRE_DATABASE_URL": store_url}
    log = tmp_path / "worker.log"
    with (
        log.open("wb") as out,
        subprocess.Popen(
            [sys.executable, "-m", "sensors", "worker", str(FLOWS)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as worker,
    ):
        try:
            await eventually(
                lambda: b"worker ready" in log.read_bytes() or worker.poll() is not None,
                "the worker to be ready",
            )
            assert worker.poll() is None, log.read_text()
            # When an event is published
            event_id = await publish.aio("data_updated", {"rows": "3"})
            # Then the worker runs the flow and records it in the store
            async with await RunStore.open(store_url) as store:
                run = await finished_run(store, event_id)
            assert run.phase == WorkflowPhase.SUCCEEDED
            assert run.parameters["rows"] == 3
            # And SIGUSR1 logs where each of its tasks waits, and it goes on
            worker.send_signal(signal.SIGUSR1)
            dump = await eventually(
                lambda: b"tasks, and where each waits" in log.read_bytes(), "the task dump"
            )
            assert dump and b"tripwire sensors: consume_batches (" in log.read_bytes()
            assert worker.poll() is None
            # And SIGTERM stops it cleanly
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0, log.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()

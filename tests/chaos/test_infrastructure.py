"""The broker and the database go away and come back: nothing accepted is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from sensors.broker import EmbeddedBroker
from sensors.runs.store import RunStore
from tests.fixtures.chaos import CHAOS_FLOWS, Expected, runs_at_least
from tests.fixtures.db import PrivatePostgres
from tests.fixtures.processes import ready, worker
from tests.fixtures.waits import eventually
from triggers import publish

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


async def test_the_broker_restarted_with_its_data_in_s3(
    s3_broker: EmbeddedBroker, chaos_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**chaos_env, "TRIPWIRE_KAFKA_BOOTSTRAP": s3_broker.bootstrap}
    assert os.environ["TRIPWIRE_KAFKA_BOOTSTRAP"] == s3_broker.bootstrap
    log, expected = tmp_path / "worker.log", Expected()
    async with await RunStore.open(env["TRIPWIRE_DATABASE_URL"]) as store:
        with worker([CHAOS_FLOWS], env, log) as process:
            await ready(process, log)
            # Given events the worker took, and an event held for a second one
            await expected.stream(ticks=12, pairs=3)
            held = await publish.aio("chaos_a", {"k": "across"})
            await eventually(lambda: runs_at_least(store, 4), "the first runs", timeout=60)
            # When the broker is killed and, a few seconds later, started again
            assert s3_broker.pid is not None
            os.kill(s3_broker.pid, signal.SIGKILL)
            s3_broker.stop()
            await asyncio.sleep(3)
            s3_broker.start(timeout=30)
            # Then the worker goes on: the held event pairs with one published after it,
            # and every event published before and after makes its run, once
            second = await publish.aio("chaos_b", {"k": "across"})
            expected.runs.append(frozenset([held, second]))
            await expected.stream(ticks=12, pairs=3)
            await expected.exactly_once(store)
            assert process.poll() is None


async def test_the_database_unavailable_for_10s(
    private_postgres: PrivatePostgres, chaos_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**chaos_env, "TRIPWIRE_DATABASE_URL": private_postgres.url}
    log, expected = tmp_path / "worker.log", Expected()
    with worker([CHAOS_FLOWS], env, log) as process:
        await ready(process, log)
        async with await RunStore.open(private_postgres.url) as store:
            await expected.stream(ticks=6, pairs=2)
            await eventually(lambda: runs_at_least(store, 3), "the first runs", timeout=60)
        # When the database goes away for 10 s while events keep coming
        private_postgres.stop()
        down = time.monotonic()
        await expected.stream(ticks=10, pairs=2, pause=0.3)
        await asyncio.sleep(10 - (time.monotonic() - down))
        private_postgres.start()
        # The worker said so, naming the fix (a stage retrying its batch, or a run's write)
        assert "Check that the database is running" in log.read_text()
        # Then the runs wait, and proceed once it is back: each once
        async with await RunStore.open(private_postgres.url) as store:
            await expected.exactly_once(store)
        assert process.poll() is None

"""Outages of the run store and the broker, as a worker meets them: it waits for what it
needs to start, and while the store is down each loop says so in one line per try, and
tries that back off. Found by the nemesis (bench/nemesis.py): three loops
logged a traceback per try, and the lifecycle relay tried every 0.2 s, so two PostgreSQL
outages of about 4 s gave three workers 128 relay warnings and 41 tracebacks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from sensors.broker import EmbeddedBroker, free_port
from sensors.engine import Engine
from sensors.registry import discover_flows
from tests.fixtures.chaos import s3_tansu
from tests.fixtures.db import PrivatePostgres
from tests.fixtures.s3 import moto_server
from tests.fixtures.waits import eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration

SCHEDULED = Path(__file__).parent / "scheduled"
LOOPS = ("lifecycle_relay", "engine", "scheduler")


async def test_a_store_outage_is_one_line_per_try_and_the_relay_backs_off(
    private_postgres: PrivatePostgres,
    engine_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TRIPWIRE_DATABASE_URL", private_postgres.url)
    monkeypatch.setenv("TRIPWIRE_DEPLOY_POLL_INTERVAL", "0.5")
    monkeypatch.setenv("TICKS_DIR", str(tmp_path))
    caplog.set_level(logging.WARNING, logger="sensors")
    async with Engine(Settings(), discover_flows([SCHEDULED])) as engine:
        await engine.wait_ready(timeout=30)
        # Given a worker with a schedule, when its store goes down
        private_postgres.stop()
        try:
            said = await eventually(
                lambda: _each_loop_said_it(caplog),
                "lines about the outage from the relay (three), the deployments and the scheduler",
                timeout=60,
            )
        finally:
            private_postgres.start()
    # Then each loop says so in one line per try, with no traceback
    assert {r.name.rsplit(".", 1)[-1] for r in said} >= set(LOOPS), [r.name for r in said]
    assert not [r.getMessage() for r in said if r.exc_info], "a traceback per try"
    assert all("Check that the database is running" in r.getMessage() for r in said), [
        r.getMessage() for r in said
    ]
    # and the relay tries again later each time: 0.5 s, 1 s, 2 s...
    relay = [r for r in said if r.name.endswith("lifecycle_relay")]
    waits = [float(r.getMessage().split("retrying in ")[1].split("s")[0]) for r in relay]
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0][: len(waits)], waits
    gaps = [b.created - a.created for a, b in itertools.pairwise(relay)]
    assert all(gap >= wait - 0.05 for gap, wait in zip(gaps, waits, strict=False)), gaps


def _each_loop_said_it(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord] | None:
    said = _outage_lines(caplog)
    by_loop = [sum(r.name.endswith(loop) for r in said) for loop in LOOPS]
    return said if by_loop[0] >= 3 and all(by_loop) else None


def _outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the loops logged at WARNING or above."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.rsplit(".", 1)[-1] in LOOPS
    ]


async def test_a_worker_started_while_the_database_is_down_waits_for_it(
    private_postgres: PrivatePostgres,
    engine_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # Found by the nemesis: a worker restarted during an outage of PostgreSQL exited (1)
    monkeypatch.setenv("TRIPWIRE_DATABASE_URL", private_postgres.url)
    private_postgres.stop()
    said = await _starts_once_it_answers(
        "this worker is starting: the run store is unavailable",
        private_postgres.start,
        monkeypatch,
        caplog,
        tmp_path,
    )
    assert "Check that the database is running" in said


async def test_a_worker_started_while_the_broker_is_down_waits_for_it(
    engine_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # Found by the nemesis: a worker restarted while the broker restarted exited (1) with
    # aiokafka's traceback
    port = free_port()
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    with contextlib.ExitStack() as broker:
        said = await _starts_once_it_answers(
            f"this worker is starting: the Kafka broker at 127.0.0.1:{port} does not answer",
            lambda: broker.enter_context(
                EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log")
            ),
            monkeypatch,
            caplog,
            tmp_path,
        )
    assert "TRIPWIRE_KAFKA_BOOTSTRAP is right" in said


async def test_a_worker_whose_broker_goes_away_while_it_starts_waits_for_it(
    engine_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # Found by the nemesis (seed 17 of the 30-schedule run): the broker restarted after a
    # starting worker had made its topics and before its consumers joined their groups, and
    # the worker exited (1) with "Unable to bootstrap"
    with (
        moto_server() as moto,
        s3_tansu(moto, tmp_path / "tansu.log") as broker,
    ):
        monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", broker.bootstrap)
        made = Engine._make_topics

        async def then_the_broker_goes(engine: Engine) -> None:
            await made(engine)
            await asyncio.to_thread(broker.stop)

        monkeypatch.setattr(Engine, "_make_topics", then_the_broker_goes)
        said = await _starts_once_it_answers(
            f"this worker is starting: the Kafka broker at {broker.bootstrap} does not answer",
            lambda: broker.start(timeout=30),
            monkeypatch,
            caplog,
            tmp_path,
        )
    assert "TRIPWIRE_KAFKA_BOOTSTRAP is right" in said


async def _starts_once_it_answers(
    says: str,
    bring_up: Callable[[], object],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> str:
    """Start a worker while what it needs is down: check that it waits, saying ``says``;
    then ``bring_up`` what it needs, and check that the worker starts and serves its
    flows. Return the line it said."""
    monkeypatch.setenv("TICKS_DIR", str(tmp_path))
    caplog.set_level(logging.WARNING, logger="sensors")
    engine = Engine(Settings(), discover_flows([SCHEDULED]))
    starting = asyncio.create_task(engine.start())
    try:
        said = await eventually(
            lambda: next((r.getMessage() for r in caplog.records if says in r.getMessage()), None),
            f"the worker to say {says!r}",
        )
        assert not starting.done()
        assert said.startswith(says), said
        bring_up()
        await asyncio.wait_for(starting, 60)
        await engine.wait_ready(timeout=30)
        return str(said)
    finally:
        starting.cancel()
        await engine.stop()

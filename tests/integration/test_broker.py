"""The embedded broker: it answers Kafka clients and never outlives its parent."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from sensors.broker import EmbeddedBroker, probe_metadata
from tests.fixtures.servers import pid_alive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _gone_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


CHILD = textwrap.dedent(
    """
    import sys, time
    from sensors.broker import EmbeddedBroker
    broker = EmbeddedBroker()
    broker.start()
    print(broker.pid, flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)
    time.sleep(60)
    """
)


@contextlib.contextmanager
def _child(mode: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A Python process that starts a broker and prints its pid."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, mode], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip().isdigit(), f"child printed {line!r}"
        try:
            yield child, int(line)
        finally:
            if child.poll() is None:
                child.kill()


async def test_the_broker_answers_metadata_and_carries_messages() -> None:
    with EmbeddedBroker() as broker:
        assert probe_metadata(broker.bootstrap)
        topic = f"t{uuid.uuid4().hex[:10]}"
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await consumer.getone()
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"k", b"hello")


def test_two_brokers_run_at_once_and_stop_is_idempotent() -> None:
    with EmbeddedBroker() as first, EmbeddedBroker() as second:
        assert first.bootstrap != second.bootstrap
        assert probe_metadata(first.bootstrap) and probe_metadata(second.bootstrap)
        pid = first.pid
        first.stop()
        first.stop()
        assert pid is not None and _gone_within(pid, 5)
        assert not probe_metadata(first.bootstrap)
        assert probe_metadata(second.bootstrap)


def test_the_broker_stops_when_its_parent_exits_normally() -> None:
    with _child("exit") as (child, pid):
        assert child.wait(10) == 0
        assert _gone_within(pid, 5)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_the_broker_dies_when_its_parent_is_interrupted_terminated_or_killed(sig: int) -> None:
    with _child("wait") as (child, pid):
        assert pid_alive(pid)
        child.send_signal(sig)
        child.wait(10)
        assert _gone_within(pid, 5), f"broker {pid} outlived its parent after {sig!r}"


def test_tripwire_broker_runs_until_ctrl_c_then_exits_cleanly() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "sensors", "broker", "--port", "0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            assert "broker ready" in line, line
            bootstrap = line.split(" at ")[1].split()[0]
            assert probe_metadata(bootstrap)
            process.send_signal(signal.SIGINT)
            assert process.wait(10) == 0
            assert not probe_metadata(bootstrap)
        finally:
            if process.poll() is None:
                process.kill()

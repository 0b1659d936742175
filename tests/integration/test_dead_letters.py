"""Malformed records on the events topic: dead-lettered with the reason; the worker goes on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from sensors.stages.deadletter import read_dead_letters
from tests.fixtures.engine import FLOWS, finished_run, tripwire_cli
from tests.fixtures.waits import eventually
from triggers import publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration

LIMIT = 4096
CE = [("ce_type", b"data_updated"), ("ce_specversion", b"1.0"), ("ce_source", b"test")]
BAD = [
    ([], b"{}", "not a binary-mode CloudEvent: header ce_type is missing"),
    ([*CE, ("ce_id", b"bad-json"), ("content-type", b"application/json")], b"{nope", "not JSON"),
    ([*CE, ("ce_id", b"a-list"), ("content-type", b"application/json")], b"[1, 2]", "list payload"),
    ([*CE, ("ce_id", b"csv"), ("content-type", b"text/csv")], b"a,b", "content type b'text/csv'"),
    (
        [*CE, ("ce_id", b"huge"), ("content-type", b"application/json")],
        json.dumps({"blob": "x" * 2 * LIMIT}).encode(),
        f"over the limit of {LIMIT}",
    ),
]


@pytest.fixture
async def worker(engine_env: dict[str, str]) -> AsyncIterator[RunStore]:
    async with Engine(Settings(max_payload_bytes=LIMIT), discover_flows([FLOWS])) as running:
        await running.wait_ready(timeout=30)
        assert running.store is not None
        yield running.store


async def test_malformed_records_are_dead_lettered_and_the_worker_keeps_going(
    worker: RunStore, engine_env: dict[str, str]
) -> None:
    # Given a producer that sends five kinds of garbage to the events topic
    producer = AIOKafkaProducer(bootstrap_servers=engine_env["TRIPWIRE_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        for headers, value, _ in BAD:
            await producer.send_and_wait(
                engine_env["TRIPWIRE_TOPIC_EVENTS"], value, key=b"data_updated", headers=headers
            )
    finally:
        await producer.stop()
    # When a good event follows
    event = await publish.aio("data_updated", {"rows": 3})
    # Then it runs, and each bad record is a dead letter with its reason
    run = await finished_run(worker, event)
    assert run.phase == WorkflowPhase.SUCCEEDED
    settings = Settings()
    letters = await eventually(
        lambda: _at_least(settings, len(BAD)), "five dead letters", timeout=30
    )
    for (_, value, reason), letter in zip(BAD, letters, strict=True):
        assert reason in letter.reason, (reason, letter.reason)
        assert letter.topic == engine_env["TRIPWIRE_TOPIC_EVENTS"]
        assert letter.size == len(value) and letter.truncated == (len(value) > LIMIT)
    # And the CLI lists them, and replays one (still bad: it comes back)
    listed = json.loads(
        (await tripwire_cli(engine_env, "events", "dead-letter", "list", "--json")).stdout
    )
    assert [d["truncated"] for d in listed] == [False, False, False, False, True]
    again = await tripwire_cli(
        engine_env, "events", "dead-letter", "replay", "--offset", str(letters[1].offset)
    )
    assert again.returncode == 0 and "replayed 1 dead letter(s)" in again.stdout
    back = await eventually(lambda: _at_least(settings, len(BAD) + 1), "the replayed record")
    assert "not JSON" in back[-1].reason
    refused = await tripwire_cli(engine_env, "events", "dead-letter", "replay", "--offset", "99")
    assert refused.returncode == 1 and "no dead letter at offset(s) [99]" in refused.stderr


async def _at_least(settings: Settings, count: int) -> list | None:  # type: ignore[type-arg]
    letters = await read_dead_letters(settings)
    return letters if len(letters) >= count else None

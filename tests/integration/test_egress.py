"""Cloud events egress: lifecycle events to Kafka, SNS/SQS (moto) and Pub/Sub (emulator)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from moto.server import ThreadedMotoServer

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from tests.fixtures.engine import FLOWS, finished_run
from tests.fixtures.waits import eventually
from triggers import publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration

AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


async def run_once(config: dict[str, Any], sent: int) -> RunRecord:
    """A worker with egress on; one event, one run of `refresh`, to its end, and until
    its egress sent ``sent`` lifecycle events (the relay and egress lag the run's end)."""
    async with Engine(Settings(cloud_events=config), discover_flows([FLOWS])) as engine:
        await engine.wait_ready(timeout=30)
        assert engine.store is not None and engine.egress is not None
        egress = engine.egress
        event = await publish.aio("data_updated", {"rows": 1})
        run = await finished_run(engine.store, event)
        await eventually(lambda: egress.sent >= sent, f"{sent} lifecycle events sent", timeout=60)
        return run


def phases(events: list[dict[str, Any]], run: RunRecord) -> list[tuple[str, str]]:
    mine = [e for e in events if e["data"]["execution_id"]["name"] == run.name]
    return [(e["subject"], e["data"]["phase"]) for e in mine]


# kafka


async def test_lifecycle_events_go_to_a_kafka_topic_as_cloudevents(
    engine_env: dict[str, str], kafka_bootstrap: str
) -> None:
    topic = f"lineage-{uuid.uuid4().hex[:8]}"
    config = {
        "enable": True,
        "type": "kafka",
        "kafka": {"brokers": [kafka_bootstrap]},
        "eventsPublisher": {"topicName": topic, "eventTypes": ["workflow"]},
        "source": "tripwire://prod-eu",
    }
    run = await run_once(config, sent=3)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while len(records) < 3 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    headers = [dict(r.headers) for r in records]
    assert {h["ce_type"] for h in headers} == {b"com.tripwire.resource.workflow"}  # no tasks
    assert {h["ce_source"] for h in headers} == {b"tripwire://prod-eu"}
    assert [json.loads(r.value)["phase"] for r in records] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert {r.key for r in records} == {run.name.encode()}


# aws


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ThreadedMotoServer, str]]:
    """A moto server of this test's own, on a fixed port, so it can be stopped and restarted."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {**AWS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    try:
        yield server, endpoint
    finally:
        server.stop()


def fan_out() -> tuple[str, Any, str]:
    """An SNS topic with an SQS queue subscribed (raw delivery): (topic ARN, sqs, queue URL)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    name = f"tripwire-{uuid.uuid4().hex[:8]}"
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    return topic, sqs, queue


def drain(sqs: Any, queue: str, want: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(events) < want and time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        events += [json.loads(m["Body"]) for m in answer.get("Messages", [])]
    return events


async def test_lifecycle_events_fan_out_from_sns_to_sqs_as_cloudevents(
    engine_env: dict[str, str], moto_server: tuple[ThreadedMotoServer, str]
) -> None:
    topic, sqs, queue = fan_out()
    config = {"enable": True, "type": "aws", "region": "us-east-1", "topicName": topic}
    run = await run_once(config, sent=5)
    events = drain(sqs, queue, 5)
    assert phases(events, run) == [
        ("WorkflowExecutionEvent", "QUEUED"),
        ("WorkflowExecutionEvent", "RUNNING"),
        ("TaskExecutionEvent", "RUNNING"),
        ("TaskExecutionEvent", "SUCCEEDED"),
        ("WorkflowExecutionEvent", "SUCCEEDED"),
    ]
    first = events[0]
    assert first["specversion"] == "1.0" and first["type"] == "com.tripwire.resource.workflow"
    assert first["id"] and first["time"] and first["source"].startswith("tripwire://")
    assert len({e["id"] for e in events}) == len(events)


async def test_lifecycle_events_go_straight_to_an_sqs_queue_by_its_arn(
    engine_env: dict[str, str], moto_server: tuple[ThreadedMotoServer, str]
) -> None:
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"tripwire-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    config = {
        "enable": True,
        "type": "aws",
        "eventsPublisher": {
            "topicName": arn["Attributes"]["QueueArn"],
            "eventTypes": ["task"],
        },
    }
    run = await run_once(config, sent=2)
    events = drain(sqs, queue, 2)
    assert phases(events, run) == [
        ("TaskExecutionEvent", "RUNNING"),
        ("TaskExecutionEvent", "SUCCEEDED"),
    ]
    assert {e["type"] for e in events} == {"com.tripwire.resource.task"}


async def test_a_sink_outage_never_blocks_runs_and_delivery_catches_up(
    engine_env: dict[str, str], moto_server: tuple[ThreadedMotoServer, str]
) -> None:
    server, _ = moto_server
    topic, sqs, queue = fan_out()
    config = {"enable": True, "type": "aws", "region": "us-east-1", "topicName": topic}
    async with Engine(Settings(cloud_events=config), discover_flows([FLOWS])) as engine:
        await engine.wait_ready(timeout=30)
        assert engine.store is not None and engine.egress is not None
        # Given the sink down
        server.stop()
        # When runs happen meanwhile
        events = [await publish.aio("data_updated", {"rows": n}) for n in range(3)]
        runs = [await finished_run(engine.store, e) for e in events]
        assert all(r.phase == WorkflowPhase.SUCCEEDED for r in runs)
        await eventually(lambda: engine.egress and engine.egress.failures, "a failed delivery")
        # And the sink comes back
        server.start()
        await eventually(lambda: engine.egress and engine.egress.sent >= 15, "delivery", timeout=90)
    # Then every event of every run arrived
    received = drain(sqs, queue, 15)
    for run in runs:
        assert [p for _, p in phases(received, run)].count("SUCCEEDED") == 2


# gcp


@pytest.fixture
def pubsub_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Pub/Sub emulator of the Google Cloud SDK on a free port, if this machine has it."""
    gcloud = shutil.which("gcloud")
    if gcloud is None or shutil.which("java") is None:
        # Optional on a machine, as the issue allows: skipped (with the reason), even in CI.
        pytest.skip("no Pub/Sub emulator here: it needs gcloud (pubsub-emulator) and java")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={host}", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the Pub/Sub emulator is installed but did not start within 60 s")
            time.sleep(0.5)
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        yield host
    finally:
        os.killpg(process.pid, 15)
        process.wait(20)


async def test_lifecycle_events_go_to_pubsub_as_cloudevents(
    engine_env: dict[str, str], pubsub_emulator: str
) -> None:
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path("tripwire-test", "lineage")
    subscription = subscriber.subscription_path("tripwire-test", "lineage-sub")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    config = {
        "enable": True,
        "type": "gcp",
        "gcp": {"projectId": "tripwire-test"},
        "eventsPublisher": {"topicName": "lineage", "eventTypes": ["all"]},
    }
    run = await run_once(config, sent=5)
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(events) < 5 and time.monotonic() < deadline:
        answer = subscriber.pull(subscription=subscription, max_messages=10, timeout=5)
        events += [json.loads(m.message.data) for m in answer.received_messages]
        if answer.received_messages:
            ids = [m.ack_id for m in answer.received_messages]
            subscriber.acknowledge(subscription=subscription, ack_ids=ids)
    assert [p for _, p in phases(events, run)][-1] == "SUCCEEDED"
    assert all(e["specversion"] == "1.0" for e in events)
    subscriber.close()

"""Events published inside a trace, through the real broker: the record any Kafka client
reads carries the trace in its ``ce_traceparent`` header (publish() and the HTTP API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import SpanKind

from tests.fixtures.engine import Api
from tests.fixtures.kafka import whole_topic
from tests.fixtures.tracing import Traced
from triggers import publish
from triggers.envelope import decode

pytestmark = pytest.mark.integration


async def test_an_event_published_inside_a_span_reaches_kafka_with_its_trace_context(
    kafka_bootstrap: str,
    unique_name: str,
    traced: Traced,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    topic = f"{unique_name}.events"
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TRIPWIRE_TOPIC_EVENTS", topic)
    # Given a job inside a span
    with traced.provider.get_tracer("etl").start_as_current_span("nightly load") as job:
        # When it publishes an event through the broker
        event_id = await publish.aio("data_updated", {"rows": 7})
    # Then a plain consumer reads the record with the trace context in a ce_ header
    [record] = await whole_topic(kafka_bootstrap, topic)
    headers = {key: value.decode() for key, value in record.headers}
    _, trace_id, parent_id, _ = headers["ce_traceparent"].split("-")
    assert int(trace_id, 16) == job.get_span_context().trace_id
    [create] = [s for s in traced.spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert int(parent_id, 16) == create.context.span_id
    assert create.attributes is not None
    assert create.attributes["messaging.destination.name"] == topic
    # And the engine's decoder passes it along with the event
    event = decode(record.value, record.headers)
    assert (event.id, event.traceparent) == (event_id, headers["ce_traceparent"])


async def test_the_api_keeps_a_cloudevents_trace_context_and_else_takes_the_requests(
    api: Api,
) -> None:
    # Given a traced HTTP client, and a CloudEvent that was traced elsewhere before
    request_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    own_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = {**api.headers("publish"), "traceparent": request_trace, "tracestate": "rojo=1"}
    event = {"specversion": "1.0", "id": "ce-1", "source": "/crm", "type": "data_updated"}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        # When both are posted with the request's trace context
        plain = await client.post(
            "/api/v1/events/data_updated", params={"id": "plain-1"}, json={}, headers=traced
        )
        own = await client.post(
            "/api/v1/events/data_updated",
            content=json.dumps({**event, "traceparent": own_trace, "data": {}}),
            headers={**traced, "content-type": "application/cloudevents+json"},
        )
    assert plain.status_code == own.status_code == 202, (plain.text, own.text)
    # Then the plain event joins the request's trace, and the CloudEvent keeps its own
    records = await whole_topic(api.settings.require_bootstrap(), api.settings.topic_events)
    found = {decode(r.value, r.headers).id: dict(r.headers) for r in records}
    assert found["plain-1"]["ce_traceparent"] == request_trace.encode()
    assert found["plain-1"]["ce_tracestate"] == b"rojo=1"
    assert found["ce-1"]["ce_traceparent"] == own_trace.encode()
    assert "ce_tracestate" not in found["ce-1"]


async def test_the_readmes_traced_publisher_joins_its_span_and_exports_it(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    # Given the README's example, with spans printed rather than sent to a collector
    topic = f"{unique_name}.events"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRIPWIRE_"))} | {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "nightly-etl",
        "TRIPWIRE_HOME": str(tmp_path),
        "TRIPWIRE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRIPWIRE_TOPIC_EVENTS": topic,
    }
    example = Path(__file__).parents[2] / "examples" / "traced_publish.py"
    # When it runs
    done = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # Then it exported its span and the event's producer span, and the event is in its trace
    *_, event_id, _, _, trace_id = done.stdout.split()
    assert '"name": "load sales"' in done.stdout
    assert f'"name": "create {topic}"' in done.stdout
    [record] = await whole_topic(kafka_bootstrap, topic)
    event = decode(record.value, record.headers)
    assert event.id == event_id
    assert event.traceparent is not None and event.traceparent.split("-")[1] == trace_id

"""Events join their publisher's trace: W3C trace context in the CloudEvent, at no cost when off."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from tests.fixtures.tracing import Traced
from triggers import publish, tracing
from triggers.envelope import KafkaRecord
from triggers.errors import ConfigurationError

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# The module: `triggers.publish` is the function, which the package re-exports.
publishing = importlib.import_module("triggers.publish")


@pytest.fixture
def provider(traced: Traced) -> TracerProvider:
    return traced.provider


@pytest.fixture
def spans(traced: Traced) -> InMemorySpanExporter:
    return traced.spans


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[KafkaRecord]:
    """What publish() hands to its producer; no broker involved."""
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    records: list[KafkaRecord] = []

    async def send(settings: object, record: KafkaRecord) -> None:
        records.append(record)

    monkeypatch.setattr(publishing._PRODUCERS, "send", send)
    return records


def headers_of(record: KafkaRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def test_an_event_published_inside_a_span_joins_its_trace_through_a_producer_span(
    provider: TracerProvider, spans: InMemorySpanExporter, sent: list[KafkaRecord]
) -> None:
    # Given a caller inside a span
    with provider.get_tracer("caller").start_as_current_span("nightly etl") as caller:
        # When it publishes
        publish("data_updated", {"rows": 1}, id="e1")
    # Then the event is in the caller's trace, as a "create" producer span's child
    [record] = sent
    version, trace_id, parent_id, flags = headers_of(record)["ce_traceparent"].split("-")
    [create] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert create.name == "create tripwire.events"
    assert int(trace_id, 16) == caller.get_span_context().trace_id == create.context.trace_id
    assert int(parent_id, 16) == create.context.span_id
    assert create.parent is not None
    assert create.parent.span_id == caller.get_span_context().span_id
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert create.attributes is not None
    assert create.attributes["messaging.message.id"] == "e1"
    assert create.attributes["cloudevents.event_type"] == "data_updated"


async def test_the_async_form_joins_the_callers_trace_too(
    provider: TracerProvider, sent: list[KafkaRecord]
) -> None:
    with provider.get_tracer("caller").start_as_current_span("handler") as caller:
        await publish.aio("data_updated", {"rows": 1})
    traceparent = headers_of(sent[0])["ce_traceparent"]
    assert int(traceparent.split("-")[1], 16) == caller.get_span_context().trace_id


def test_the_callers_tracestate_goes_along(
    provider: TracerProvider, sent: list[KafkaRecord]
) -> None:
    # Given a current span whose context carries vendor state
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("congo", "t61rcWkgMzE")]),
    )
    with trace.use_span(NonRecordingSpan(context)):
        publish("data_updated", {})
    headers = headers_of(sent[0])
    assert headers["ce_tracestate"] == "congo=t61rcWkgMzE"
    assert headers["ce_traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


def test_without_a_tracer_provider_here_the_event_carries_the_callers_own_context(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch, sent: list[KafkaRecord]
) -> None:
    monkeypatch.setattr(tracing, "_tracer", trace.NoOpTracer())
    with provider.get_tracer("caller").start_as_current_span("handler") as caller:
        publish("data_updated", {})
        expected = tracing.current()
    assert expected is not None
    assert headers_of(sent[0])["ce_traceparent"] == expected.traceparent
    assert int(expected.traceparent.split("-")[2], 16) == caller.get_span_context().span_id


def test_without_a_current_span_an_event_has_no_trace_context(
    provider: TracerProvider, spans: InMemorySpanExporter, sent: list[KafkaRecord]
) -> None:
    publish("data_updated", {})
    assert "ce_traceparent" not in headers_of(sent[0])
    assert spans.get_finished_spans() == ()


def test_a_request_traceparent_is_taken_when_there_is_no_current_span(
    provider: TracerProvider,
) -> None:
    request = {"traceparent": TRACEPARENT, "tracestate": "congo=t61"}
    assert tracing.current(request) == tracing.TraceContext(TRACEPARENT, "congo=t61")
    assert tracing.current({"traceparent": "00-nonsense"}) is None
    with provider.get_tracer("caller").start_as_current_span("server") as server:
        found = tracing.current(request)
    assert found is not None
    assert int(found.traceparent.split("-")[2], 16) == server.get_span_context().span_id


def test_an_event_that_carries_a_traceparent_keeps_it(provider: TracerProvider) -> None:
    from triggers.envelope import make_envelope

    envelope, _ = make_envelope("e", {}, traceparent=TRACEPARENT)
    with provider.get_tracer("caller").start_as_current_span("relay"):
        stamped = tracing.stamp(envelope, tracing.current(), "tripwire.events")
    assert stamped.traceparent == TRACEPARENT


def run_python(code: str, tmp_path: Path, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter without OTEL_* or TRIPWIRE_* settings (but
    ``env``); return the JSON object it printed last."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRIPWIRE_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "TRIPWIRE_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


PUBLISH_ONE = """
import importlib, json, sys
publishing = importlib.import_module("triggers.publish")
records = []
async def send(settings, record):
    records.append(record)
publishing._PRODUCERS.send = send
publishing.publish("data_updated", {"rows": 1})
print(json.dumps({
    "headers": sorted(k for k, _ in records[0].headers),
    "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
    "provider": type(otel.get_tracer_provider()).__name__ if (otel := sys.modules.get(
        "opentelemetry.trace"
    )) else None,
}))
"""


def test_with_tracing_off_publishing_imports_no_opentelemetry_and_adds_no_headers(
    tmp_path: Path,
) -> None:
    found = run_python(PUBLISH_ONE, tmp_path, TRIPWIRE_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert found["otel"] == []
    assert "ce_traceparent" not in found["headers"]  # type: ignore[operator]
    assert "ce_type" in found["headers"]  # type: ignore[operator]


def test_with_tracing_configured_the_first_event_sets_up_the_sdk(tmp_path: Path) -> None:
    found = run_python(
        PUBLISH_ONE,
        tmp_path,
        TRIPWIRE_KAFKA_BOOTSTRAP="127.0.0.1:1",
        OTEL_TRACES_EXPORTER="console",
    )
    assert found["provider"] == "TracerProvider"


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, True),
    ],
)
def test_tracing_is_configured_by_the_standard_variables(environ: dict[str, str], on: bool) -> None:
    assert tracing.configured(environ) is on


def test_without_the_otel_extra_setting_up_tracing_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # as if the SDK were not installed\n"
        "from triggers import tracing\n"
        "try:\n"
        "    tracing.configure()\n"
        "except Exception as exc:\n"
        "    print(json.dumps({'error': type(exc).__name__, 'message': str(exc)}))\n"
    )
    found = run_python(code, tmp_path, OTEL_TRACES_EXPORTER="otlp")
    assert found["error"] == ConfigurationError.__name__
    assert "pip install 'tripwire[otel]'" in str(found["message"])


def test_an_unknown_exporter_is_refused_naming_it(tmp_path: Path) -> None:
    code = (
        "import json\n"
        "from triggers import tracing\n"
        "try:\n"
        "    tracing.configure()\n"
        "except Exception as exc:\n"
        "    print(json.dumps({'message': str(exc)}))\n"
    )
    found = run_python(code, tmp_path, OTEL_TRACES_EXPORTER="zipkin_json")
    assert "'zipkin_json', which is not installed here" in str(found["message"])


def test_a_span_continues_the_trace_a_traceparent_names_and_links_to_others(
    spans: InMemorySpanExporter,
) -> None:
    # Given two events' trace contexts, one of them malformed, and no current span
    first = tracing.span("first", None)
    carried = tracing.traceparent(first)
    first.end()
    # When a span starts from the first, linked to both and to none
    second = tracing.span("second", carried.traceparent, links=[carried.traceparent, "00-x", None])
    second.end()
    # Then it is the first's child, in its trace, with one link: malformed ones are dropped
    done = {s.name: s for s in spans.get_finished_spans()}
    parent, child = done["first"].context, done["second"]
    assert child.parent is not None and child.parent.span_id == parent.span_id
    assert child.context.trace_id == parent.trace_id
    assert [link.context.span_id for link in child.links] == [parent.span_id]
    assert carried.traceparent.startswith(f"00-{parent.trace_id:032x}-{parent.span_id:016x}-")


def test_a_span_from_a_malformed_parent_starts_a_trace_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    tracing.span("alone", "not a traceparent").end()
    [alone] = spans.get_finished_spans()
    assert alone.parent is None


def test_the_engine_records_spans_only_with_a_tracer_provider_set_up() -> None:
    # A process that imported OpenTelemetry but set up no provider: on, recording nothing
    code = (
        "import opentelemetry.trace\n"
        "from triggers import tracing\n"
        "print(tracing.enabled(), tracing.spans)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "False"], out.stderr

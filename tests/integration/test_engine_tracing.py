"""The engine continues an event's trace: route, correlate and fire spans, in a worker that
records spans (the SDK's in-memory exporter), through the real broker."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from sensors.engine import Engine
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import finished_run
from tests.fixtures.tracing import Traced
from tests.fixtures.waits import eventually
from triggers import publish
from triggers.envelope import encode, make_envelope
from triggers.settings import Settings

pytestmark = pytest.mark.integration


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def attr(span: ReadableSpan, key: str) -> object:
    return (span.attributes or {})[key]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_two_event_fire_is_a_child_of_its_last_event_linked_to_both(
    traced: Traced, engine: Engine, store: RunStore
) -> None:
    # Given a job that publishes the two events of a correlated sensor inside one span
    with traced.provider.get_tracer("etl").start_as_current_span("nightly load") as job:
        await publish.aio("orders_loaded", {"date": "2031-01-02", "rows": 3})
        # (the first one held before the second comes, in a batch of its own)
        await eventually(
            lambda: named(traced.spans.get_finished_spans(), "correlate daily_join.trigger"),
            "the first event's correlate span",
        )
        last = await publish.aio("customers_loaded", {"date": "2031-01-02", "rows": 4})
    # When the sensor fires and the run ends
    run = await finished_run(store, last)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    spans = traced.spans.get_finished_spans()
    trace_id = job.get_span_context().trace_id
    # Then each event was routed in the job's trace, a child of its producer span
    creates = {
        attr(s, "messaging.message.id"): s
        for s in named(spans, f"create {Settings().topic_events}")
    }
    routes = {}
    for event in ("orders_loaded", "customers_loaded"):
        [route] = named(spans, f"route {event}")
        event_id = attr(route, "cloudevents.event_id")
        assert route.kind == SpanKind.CONSUMER
        assert route.context.trace_id == trace_id
        assert parent_of(route) == creates[event_id].context.span_id
        routes[event] = route
    # and correlated under its route span, saying what the key held
    correlates = named(spans, "correlate daily_join.trigger")
    by_event = {attr(s, "cloudevents.event_id"): s for s in correlates}
    assert len(correlates) == 2
    for route in routes.values():
        correlate = by_event[attr(route, "cloudevents.event_id")]
        assert parent_of(correlate) == route.context.span_id
        assert attr(correlate, "tripwire.correlation.key") == '"2031-01-02"'  # as JSON
    first = by_event[str(attr(routes["orders_loaded"], "cloudevents.event_id"))]
    assert attr(first, "tripwire.held") == ("orders_loaded",)
    assert attr(by_event[last], "tripwire.held") == ()  # both went to the run
    # and the fire is a child of the last event's correlate span, linked to both events
    [fire] = named(spans, "fire daily_join.trigger")
    assert parent_of(fire) == by_event[last].context.span_id
    assert fire.context.trace_id == trace_id
    linked = {link.context.span_id for link in fire.links}
    assert linked == {route.context.span_id for route in routes.values()}
    assert attr(fire, "tripwire.run.name") == run.name
    # and the run's events keep the trace context they were routed with
    assert {e["traceparent"].split("-")[2] for e in run.events} == {
        f"{route.context.span_id:016x}" for route in routes.values()
    }


async def test_a_one_event_fire_is_a_child_of_its_route_span(
    traced: Traced, engine: Engine, store: RunStore
) -> None:
    with traced.provider.get_tracer("etl").start_as_current_span("refresh"):
        event_id = await publish.aio("data_updated", {"rows": 1})
    run = await finished_run(store, event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    spans = traced.spans.get_finished_spans()
    [route] = named(spans, "route data_updated")
    [fire] = named(spans, "fire refresh.trigger")
    assert parent_of(fire) == route.context.span_id
    assert not named(spans, "correlate refresh.trigger")  # nothing to hold


async def test_a_worker_that_records_no_spans_passes_the_events_trace_on_untouched(
    engine: Engine, store: RunStore
) -> None:
    # Given an event that carries a trace context, and a worker with tracing off
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    event_id = await _publish_with(traceparent)
    # Then its run's event keeps that context as it was
    run = await finished_run(store, event_id)
    [event] = run.events
    assert event["traceparent"] == traceparent


async def _publish_with(traceparent: str) -> str:
    """Publish ``data_updated`` carrying ``traceparent``, as another tracer's producer would."""
    settings = Settings()
    envelope, _ = make_envelope("data_updated", {"rows": 2}, traceparent=traceparent)
    record = encode(envelope)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic_events, record.value, key=record.key, headers=record.headers
        )
    finally:
        await producer.stop()
    return envelope.id

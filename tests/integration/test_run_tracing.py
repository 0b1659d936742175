"""A run in its trace, through the real engine, broker and store: a run request that carries
a trace context is admitted, launched and tried under spans of that trace, its process
gets the context (``TRACEPARENT``, ``current.traceparent``, OpenTelemetry's current
context), and its lifecycle events carry it on (``ce_traceparent``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from sensors.core.sensor import run_policy, target_fields
from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.stages.kafka import new_producer
from sensors.stages.lifecycle_relay import TASK_EVENT
from tests.fixtures.kafka import whole_topic
from tests.fixtures.tracing import Traced
from tests.fixtures.waits import eventually
from triggers import tracing
from triggers.errors import RunNotFoundError
from triggers.settings import Settings

pytestmark = pytest.mark.integration

FLOWS = Path(__file__).parent / "traced_flows"
TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACE = f"00-{TRACE_ID}-{PARENT_ID}-01"
"""The trace context of the request: a fire span's, as the sensor stages write it."""


@contextlib.asynccontextmanager
async def running_engine() -> AsyncIterator[Engine]:
    """A worker with the traced flow deployed (started after the test set tracing up)."""
    async with Engine(Settings(), discover_flows([FLOWS])) as engine:
        await engine.wait_ready(timeout=30)
        yield engine


def run_request(
    engine: Engine, name: str, out: Path, *, fail_times: int = 0, traceparent: str | None = None
) -> NewRun:
    [flow] = engine.flows
    return NewRun(
        project=engine.settings.project,
        domain=engine.settings.domain,
        name=name,
        flow=flow.name,
        **target_fields(flow),
        entrypoint=flow.entrypoint.model_dump(),
        parameters={"out": str(out), "fail_times": fail_times},
        events=[],
        **run_policy(flow.triggers[0]),
        traceparent=traceparent,
        tracestate="rojo=1" if traceparent else None,
    )


async def send(engine: Engine, request: NewRun) -> None:
    """Put ``request`` on the run-requests topic, as a sensor's fire does."""
    producer = new_producer(engine.settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            engine.settings.topic_run_requests,
            request.model_dump_json(exclude_none=True).encode(),
            key=request.name.encode(),
        )
    finally:
        await producer.stop()


async def finished(engine: Engine, name: str) -> RunRecord:
    assert engine.store is not None
    store = engine.store

    async def probe() -> RunRecord | None:
        try:
            run = await store.get_run(name)
        except RunNotFoundError:
            return None
        return run if run.finished_at is not None else None

    done: RunRecord = await eventually(probe, f"run {name} to end", timeout=60)
    return done


def seen(out: Path) -> list[dict[str, Any]]:
    """What the flow's attempts wrote of their trace, one per attempt."""
    return [json.loads(line) for line in out.read_text().splitlines()]


def spans_of(traced: Traced, run: str) -> dict[str, ReadableSpan]:
    return {
        span.name: span
        for span in traced.spans.get_finished_spans()
        if span.attributes and span.attributes.get("tripwire.run.name") == run
    }


def parts(traceparent: str) -> tuple[str, str]:
    """The trace id and the parent span id of a W3C traceparent."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


async def test_a_traced_run_is_admitted_launched_and_tried_under_spans_of_its_trace(
    engine_env: dict[str, str], traced: Traced, tmp_path: Path
) -> None:
    out = tmp_path / "seen.jsonl"
    async with running_engine() as engine:
        # Given a run request in a trace, whose first attempt fails
        request = run_request(engine, "traced-1", out, fail_times=1, traceparent=TRACE)
        # When the launch stage reads it
        await send(engine, request)
        run = await finished(engine, request.name)
        assert run.phase == WorkflowPhase.SUCCEEDED
        assert (run.traceparent, run.tracestate) == (TRACE, "rojo=1")

        # Then its admission and its launch are children of the request's span
        spans = spans_of(traced, run.name)
        admit, launch = spans["admit traced"], spans["run traced"]
        first, second = spans["attempt 1"], spans["attempt 2"]
        for span in (admit, launch, first, second):
            assert format(span.context.trace_id, "032x") == TRACE_ID
        assert admit.parent is not None and launch.parent is not None
        assert format(admit.parent.span_id, "016x") == PARENT_ID
        assert format(launch.parent.span_id, "016x") == PARENT_ID
        assert admit.attributes is not None
        assert admit.attributes["tripwire.admission"] == "created"
        assert admit.attributes["tripwire.flow"] == "traced"
        # And each attempt is a child of the launch, ended with its phase and error
        assert first.parent is not None and second.parent is not None
        assert first.parent.span_id == second.parent.span_id == launch.context.span_id
        assert first.attributes is not None and second.attributes is not None
        assert first.attributes["tripwire.attempt.phase"] == "RETRYABLE_FAILED"
        assert first.status.status_code is StatusCode.ERROR
        assert first.status.description is not None
        assert first.status.description.startswith("ValueError")
        assert second.attributes["tripwire.attempt.phase"] == "SUCCEEDED"
        assert second.attributes["tripwire.attempt.number"] == 2
        assert launch.attributes is not None
        assert launch.attributes["tripwire.run.phase"] == "SUCCEEDED"

        # And each attempt's process ran in its attempt's span
        for attempt, span in zip(seen(out), (first, second), strict=True):
            trace_id, parent_id = parts(attempt["env"])
            assert trace_id == TRACE_ID
            assert parent_id == format(span.context.span_id, "016x")
            assert attempt["current"] == attempt["env"]
            assert attempt["span"] == parent_id  # the flow's own spans nest under it

        # When the same request comes again
        await send(engine, request)

        # Then its admission is a span of a duplicate
        async def duplicate() -> bool:
            return any(
                s.name == "admit traced"
                and s.attributes is not None
                and s.attributes["tripwire.admission"] == "duplicate"
                for s in traced.spans.get_finished_spans()
            )

        await eventually(duplicate, "the span of the duplicate's admission")


async def test_the_lifecycle_events_of_a_traced_run_carry_its_trace_context(
    engine_env: dict[str, str], traced: Traced, tmp_path: Path
) -> None:
    async with running_engine() as engine:
        # Given a traced run and one without a trace, both finished
        traced_run = run_request(engine, "traced-2", tmp_path / "a.jsonl", traceparent=TRACE)
        plain_run = run_request(engine, "plain-2", tmp_path / "b.jsonl")
        for request in (traced_run, plain_run):
            await send(engine, request)
            await finished(engine, request.name)
        bootstrap = engine.settings.require_bootstrap()
        topic = engine.settings.topic_run_events

        async def published() -> dict[str, list[dict[str, str]]] | None:
            found: dict[str, list[dict[str, str]]] = {}
            ended = set()
            for record in await whole_topic(bootstrap, topic):
                data = json.loads(record.value or b"{}")
                run = data["execution_id"]["name"]
                found.setdefault(run, []).append({k: v.decode() for k, v in record.headers})
                if data["attempt"] is None and data["phase"] == "SUCCEEDED":
                    ended.add(run)
            return found if ended == {"traced-2", "plain-2"} else None

        # When a plain Kafka consumer reads the lifecycle topic
        events = await eventually(published, "the runs' final lifecycle events", timeout=30)
    # Then the traced run's events are in its trace: the run's under the fire's span, its
    # attempt's under the attempt's span; and the other run's events are in none
    [attempt] = [s for s in traced.spans.get_finished_spans() if s.name == "attempt 1"]
    attempt_id = format(attempt.context.span_id, "016x")
    assert len(events["traced-2"]) == 5
    for headers in events["traced-2"]:
        trace_id, parent_id = parts(headers["ce_traceparent"])
        assert trace_id == TRACE_ID and headers["ce_tracestate"] == "rojo=1"
        task = headers["ce_type"] == TASK_EVENT
        assert parent_id == (attempt_id if task else PARENT_ID)
    assert all("ce_traceparent" not in headers for headers in events["plain-2"])


async def test_without_spans_a_run_process_gets_only_the_runs_own_trace_context(
    engine_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker that records no spans (any span it started would fail its run), and
    # whose own environment holds a trace context that is none of its runs'
    monkeypatch.setattr(tracing, "_on", False)
    monkeypatch.setattr(tracing, "spans", False)
    monkeypatch.setattr(tracing, "span", _no_span)
    monkeypatch.setenv("TRACEPARENT", f"00-{'1' * 32}-{'2' * 16}-01")
    async with running_engine() as engine:
        # When a run with a stored trace context and one without run
        with_trace = run_request(engine, "with-trace", tmp_path / "a.jsonl", traceparent=TRACE)
        without = run_request(engine, "without-trace", tmp_path / "b.jsonl")
        for request in (with_trace, without):
            await send(engine, request)
            assert (await finished(engine, request.name)).phase == WorkflowPhase.SUCCEEDED
    # Then the first's process joins the stored context as it is, under its parent span
    [joined] = seen(tmp_path / "a.jsonl")
    assert joined == {"env": TRACE, "current": TRACE, "imported": True, "span": PARENT_ID}
    # And the second's has none, and imported no OpenTelemetry for it
    [alone] = seen(tmp_path / "b.jsonl")
    assert alone == {"env": None, "current": None, "imported": False, "span": None}


def _no_span(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a span was started while tracing is off")

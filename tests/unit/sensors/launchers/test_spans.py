"""A run's launch and attempts as spans of its trace, and the trace context its process,
pod or call gets: the attempt span's while spans are recorded, else the run's own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.trace import StatusCode

from sensors.launchers.attempts import run_error
from sensors.launchers.spans import (
    attempt_span,
    end_span,
    in_attempt,
    launch_span,
    number_span,
    trace_env,
    trace_headers,
)
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from tests.fixtures.runs import new_run
from tests.fixtures.tracing import Traced
from triggers import tracing

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACE = f"00-{TRACE_ID}-{PARENT_ID}-01"
WORKER = "host:1:abc"


def record(traceparent: str | None = TRACE, tracestate: str | None = "rojo=1") -> RunRecord:
    now = datetime.now(UTC)
    return RunRecord(
        **new_run("flow-a").model_dump(exclude={"consumes"}),
        phase=WorkflowPhase.RUNNING,
        created_at=now,
        updated_at=now,
    ).model_copy(update={"traceparent": traceparent, "tracestate": tracestate})


def test_a_run_in_a_trace_gives_its_process_the_w3c_variables_and_its_call_the_headers() -> None:
    run = record()
    assert trace_env(run) == {"TRACEPARENT": TRACE, "TRACESTATE": "rojo=1"}
    assert trace_headers(run) == {"traceparent": TRACE, "tracestate": "rojo=1"}
    assert trace_env(record(tracestate=None)) == {"TRACEPARENT": TRACE}


def test_a_run_in_no_trace_gives_none() -> None:
    assert trace_env(record(traceparent=None)) == {} == trace_headers(record(traceparent=None))


def test_without_spans_nothing_is_started_and_the_run_carries_its_own_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "spans", False)
    run = record()
    launch = launch_span(run, WORKER)
    assert launch is None and attempt_span(run, launch, WORKER) is None
    assert in_attempt(run, None) is run
    end_span(None, AttemptPhase.FAILED)  # nothing to end


def test_a_run_in_no_trace_gets_no_spans(traced: Traced) -> None:
    assert launch_span(record(traceparent=None), WORKER) is None
    assert traced.spans.get_finished_spans() == ()


def test_an_attempt_is_a_span_under_the_launch_which_is_under_the_runs_context(
    traced: Traced,
) -> None:
    # Given a run in a trace, launched, its attempt begun and numbered
    run = record()
    launch = launch_span(run, WORKER)
    span = attempt_span(run, launch, WORKER)
    number_span(span, 1)
    # When the attempt fails, and the run with it
    error = run_error("ValueError", ErrorKind.USER, "bad rows", WORKER)
    end_span(span, AttemptPhase.FAILED, error)
    end_span(span)  # ended already: left as it is
    end_span(launch, WorkflowPhase.FAILED, error)
    # Then both are spans of the trace, the attempt a child of the launch
    attempt, whole = traced.spans.get_finished_spans()
    assert (attempt.name, whole.name) == ("attempt 1", "run flow")
    assert whole.parent is not None and format(whole.parent.span_id, "016x") == PARENT_ID
    assert attempt.parent is not None and attempt.parent.span_id == whole.context.span_id
    assert {format(s.context.trace_id, "032x") for s in (attempt, whole)} == {TRACE_ID}
    # And each ended with its phase and the error
    assert attempt.attributes is not None and whole.attributes is not None
    assert attempt.attributes["tripwire.attempt.phase"] == "FAILED"
    assert attempt.attributes["tripwire.attempt.number"] == 1
    assert attempt.attributes["tripwire.worker"] == WORKER
    assert attempt.attributes["error.type"] == "ValueError"
    assert whole.attributes["tripwire.run.phase"] == "FAILED"
    for span in (attempt, whole):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: bad rows"


def test_an_attempt_carries_its_own_span_onward_with_the_runs_tracestate(
    traced: Traced,
) -> None:
    run = record()
    span = attempt_span(run, launch_span(run, WORKER), WORKER, adopted=3)
    carried = in_attempt(run, span)
    _, trace_id, span_id, _ = (carried.traceparent or "").split("-")
    assert (trace_id, span_id) == (TRACE_ID, format(span.get_span_context().span_id, "016x"))
    assert carried.tracestate == "rojo=1"
    assert span.attributes["tripwire.attempt.adopted"] is True
    assert span.name == "attempt 3"


def test_an_attempt_that_succeeded_has_no_error_status(traced: Traced) -> None:
    run = record()
    span = attempt_span(run, launch_span(run, WORKER), WORKER)
    end_span(span, AttemptPhase.SUCCEEDED)
    [attempt] = traced.spans.get_finished_spans()
    assert attempt.status.status_code is StatusCode.UNSET

"""A run's launch and attempts as spans of its trace, and the trace context its process gets.

A run that joins a trace (its ``traceparent``: a fire's span, for a sensor's run) is
launched under a span ``run FLOW``, a child of that context, and each attempt is a span
``attempt N``, a child of the launch's; a worker that takes an attempt over from one that
died starts spans of its own for what it watches. They are made only while this worker
records spans (:data:`triggers.tracing.spans`); a run without a trace context gets none.

Whether or not spans are made, the run's process joins the trace: :func:`in_attempt` gives
the run with the context it carries onward (the attempt span's, else the stored one), and
the launchers pass that on as OpenTelemetry's carriers: the ``TRACEPARENT`` and
``TRACESTATE`` variables of a process or pod (:func:`trace_env`), the ``traceparent`` and
``tracestate`` headers of a call (:func:`trace_headers`).
"""

from __future__ import annotations

from typing import Any

from sensors.runs.models import RunError, RunRecord
from sensors.runs.phases import AttemptPhase, WorkflowPhase
from triggers import tracing
from triggers.current import TRACE_CARRIER

__all__ = [
    "CARRIER",
    "attempt_span",
    "end_span",
    "in_attempt",
    "launch_span",
    "number_span",
    "trace_env",
    "trace_headers",
]

CARRIER = TRACE_CARRIER


def launch_span(run: RunRecord, worker: str) -> Any:
    """Start the span of ``run``'s launch by ``worker``; None when no span is made."""
    if not tracing.spans or run.traceparent is None:
        return None
    return tracing.span(
        f"run {run.flow}", run.traceparent, tracestate=run.tracestate, attributes=_of(run, worker)
    )


def attempt_span(run: RunRecord, launch: Any, worker: str, adopted: int | None = None) -> Any:
    """Start the span of an attempt of ``run``, a child of its ``launch`` span; None when
    that is None. ``adopted`` is the number of an attempt taken over from a worker that died
    (a new attempt's is known once the store recorded it: :func:`number_span`)."""
    if launch is None:
        return None
    parent = tracing.traceparent(launch)
    span = tracing.span(
        "attempt", parent.traceparent, tracestate=parent.tracestate, attributes=_of(run, worker)
    )
    if adopted is not None:
        span.set_attribute("tripwire.attempt.adopted", True)
        number_span(span, adopted)
    return span


def number_span(span: Any, number: int) -> None:
    """Name an attempt's span after its number, once the store gave it one."""
    if span is not None:
        span.update_name(f"attempt {number}")
        span.set_attribute("tripwire.attempt.number", number)


def end_span(
    span: Any,
    phase: AttemptPhase | WorkflowPhase | None = None,
    error: RunError | None = None,
) -> None:
    """End ``span`` with the phase it ended in, and the error, as an ERROR status, when it
    failed; a span ended already (or None) is left as it is, so a ``finally`` may end what
    an exception cut short, with no phase."""
    if span is None or not span.is_recording():
        return
    if phase is not None:
        key = "tripwire.run.phase" if isinstance(phase, WorkflowPhase) else "tripwire.attempt.phase"
        span.set_attribute(key, phase.value)
    if error is not None:
        from opentelemetry.trace import Status, StatusCode  # imported: spans are recorded

        span.set_attributes({"error.type": error.code, "tripwire.error.kind": error.kind.value})
        span.set_status(Status(StatusCode.ERROR, f"{error.code}: {error.message}"))
    span.end()


def in_attempt(run: RunRecord, span: Any) -> RunRecord:
    """``run`` with the trace context its attempt carries onward: ``span``'s, or the run's
    own when there is no span."""
    if span is None:
        return run
    context = tracing.traceparent(span)  # the run's vendor state with it
    return run.model_copy(
        update={"traceparent": context.traceparent, "tracestate": context.tracestate}
    )


def trace_env(run: RunRecord) -> dict[str, str]:
    """The ``TRACEPARENT`` and ``TRACESTATE`` variables of ``run``'s process; none when it
    joins no trace."""
    if run.traceparent is None:
        return {}
    parent, state = CARRIER
    env = {parent: run.traceparent}
    if run.tracestate:
        env[state] = run.tracestate
    return env


def trace_headers(run: RunRecord) -> dict[str, str]:
    """The W3C ``traceparent`` and ``tracestate`` headers of a call that runs ``run``."""
    return {name.lower(): value for name, value in trace_env(run).items()}


def _of(run: RunRecord, worker: str) -> dict[str, Any]:
    return {
        "tripwire.run.name": run.name,
        "tripwire.flow": run.flow,
        "tripwire.project": run.project,
        "tripwire.domain": run.domain,
        "tripwire.target": run.target,
        "tripwire.worker": worker,
    }

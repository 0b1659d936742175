"""Lifecycle events in their run's trace: a phase change of a run with a trace context
goes out with it (``ce_traceparent``, ``ce_tracestate``), so that a ``trigger_on_finish``
sensor downstream continues the trace."""

from __future__ import annotations

from datetime import UTC, datetime

from sensors.runs import history as runs_history
from sensors.runs.models import PhaseChange
from sensors.runs.store import RunStore
from sensors.stages.lifecycle_relay import lifecycle_record
from tests.fixtures.runs import new_run
from triggers.envelope import decode
from triggers.settings import Settings

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def change(**trace: str) -> PhaseChange:
    return PhaseChange(
        id=7,
        project="p",
        domain="d",
        name="flow-a",
        flow="flow",
        attempt=1,
        phase="RUNNING",
        at=datetime.now(UTC),
        **trace,
    )


def test_a_change_of_a_traced_run_carries_its_trace_context(settings: Settings) -> None:
    record = lifecycle_record(change(traceparent=TRACE, tracestate="rojo=1"), settings)
    headers = dict(record.headers)
    assert (headers["ce_traceparent"], headers["ce_tracestate"]) == (TRACE.encode(), b"rojo=1")
    # and the engine reads it back with the event, as a trigger_on_finish sensor does
    event = decode(record.value, record.headers)
    assert (event.traceparent, event.tracestate) == (TRACE, "rojo=1")


def test_a_change_of_a_run_in_no_trace_carries_none(settings: Settings) -> None:
    headers = dict(lifecycle_record(change(), settings).headers)
    assert "ce_traceparent" not in headers and "ce_tracestate" not in headers


async def test_the_outbox_gives_each_change_its_runs_trace_context(store: RunStore) -> None:
    # Given a run in a trace and one in none, each with its QUEUED change
    traced = new_run("flow-a").model_copy(update={"traceparent": TRACE, "tracestate": "a=1"})
    await store.create_run(traced)
    await store.create_run(new_run("flow-b"))
    # When the relay reads the unpublished changes
    changes = await runs_history.unpublished_changes(store)
    # Then each has its run's trace context
    found = {c.name: (c.traceparent, c.tracestate) for c in changes}
    assert found == {"flow-a": (TRACE, "a=1"), "flow-b": (None, None)}

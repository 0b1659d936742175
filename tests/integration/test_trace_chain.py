"""One trace from publish to a downstream run: a job publishes two events inside its span; a
two-event sensor fires a run; that run's end fires a ``trigger_on_finish`` run. Every span
the worker makes (the SDK's in-memory exporter) and the context each run's process gets
belong to the job's trace, with the parents and links of docs/tracing.md."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.processes import ready, worker
from tests.fixtures.tracing import OtlpSink, Traced
from tests.fixtures.waits import eventually
from triggers import publish
from triggers.settings import Settings
from triggers.spec import finished_event

pytestmark = pytest.mark.integration

FLOWS = Path(__file__).parent / "chain_flows"


@pytest.fixture
async def chain(
    traced: Traced,
    engine_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Engine, Path]]:
    """A worker recording spans, with the chain's flows; their processes note their trace
    context in the file it returns."""
    out = tmp_path / "chain.jsonl"
    monkeypatch.setenv("CHAIN_OUT", str(out))
    async with Engine(Settings(), discover_flows([FLOWS])) as engine:
        await engine.wait_ready(timeout=30)
        yield engine, out


async def test_one_trace_runs_from_the_publisher_through_both_runs(
    traced: Traced, chain: tuple[Engine, Path]
) -> None:
    engine, out = chain
    assert engine.store is not None
    # Given a job that publishes the two events of a sensor inside its span
    with traced.provider.get_tracer("etl").start_as_current_span("nightly load") as job:
        orders = await publish.aio("chain_orders", {"day": "2031-05-06"})
        customers = await publish.aio("chain_customers", {"day": "2031-05-06"})
    trace_id = job.get_span_context().trace_id
    # When the sensor fires its run, and that run's end fires the run after it
    noted = await eventually(lambda: _noted(out, 2), "both flows to run", timeout=90)
    report = await eventually(
        lambda: _ended(engine.store, "chain_report"), "the run after", timeout=60
    )
    join = await _ended(engine.store, "chain_join")
    assert join is not None and join.phase == report.phase == WorkflowPhase.SUCCEEDED
    spans = await eventually(
        lambda: _all_ended(traced, report.name), "the spans of both runs", timeout=30
    )
    # Then every span is in the job's trace
    assert {s.context.trace_id for s in spans} == {trace_id}
    by_id = {s.context.span_id: s for s in spans}

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, span.name
        return by_id[span.parent.span_id]

    def one(name: str, **attributes: object) -> ReadableSpan:
        [found] = [
            s
            for s in spans
            if s.name == name
            and all((s.attributes or {}).get(k) == v for k, v in attributes.items())
        ]
        return found

    # each event: created under the job, routed under its creation, correlated under that
    route = {}
    for name, event_id in (("chain_orders", orders), ("chain_customers", customers)):
        created = one(f"create {Settings().topic_events}", **{"messaging.message.id": event_id})
        assert (
            created.parent is not None and created.parent.span_id == job.get_span_context().span_id
        )
        route[name] = one(f"route {name}")
        assert parent(route[name]) is created
        assert (
            parent(one("correlate chain_join.trigger", **{"cloudevents.event_id": event_id}))
            is (route[name])
        )
    # the fire: under the last event's correlate span, linked to both events
    fire = one("fire chain_join.trigger")
    assert parent(fire) is one(
        "correlate chain_join.trigger", **{"cloudevents.event_id": customers}
    )
    assert {link.context.span_id for link in fire.links} == {
        s.context.span_id for s in route.values()
    }
    # the run: admitted and launched under the fire, its attempt under its launch, and its
    # process under its attempt
    assert parent(one("admit chain_join", **{"tripwire.run.name": join.name})) is fire
    launch = one("run chain_join")
    assert parent(launch) is fire
    attempt = one("attempt 1", **{"tripwire.run.name": join.name})
    assert parent(attempt) is launch
    assert _span_id(noted["chain_join"]) == attempt.context.span_id
    # the run after it: its finish event routed under the first run's, and so on down
    # (each of its lifecycle events is routed in the trace; its final one fired the next)
    after = one("fire chain_report.trigger")
    finished = parent(after)
    assert finished.name == f"route {finished_event('chain_join')}"
    assert parent(finished) is fire  # a workflow event carries the run's context
    after_launch = one("run chain_report")
    assert parent(one("admit chain_report")) is after and parent(after_launch) is after
    after_attempt = one("attempt 1", **{"tripwire.run.name": report.name})
    assert parent(after_attempt) is after_launch
    assert _span_id(noted["chain_report"]) == after_attempt.context.span_id


def _noted(out: Path, count: int) -> dict[str, str] | None:
    """Each flow's trace context, once ``count`` flows noted theirs."""
    if not out.exists():
        return None
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return {n["flow"]: n["traceparent"] for n in lines} if len(lines) >= count else None


async def _ended(store: RunStore, flow: str) -> RunRecord | None:
    """The run of ``flow``, once it ended."""
    runs = await store.list_runs(flow=flow, limit=10)
    return runs[0] if runs and runs[0].finished_at else None


def _all_ended(traced: Traced, last_run: str) -> list[ReadableSpan] | None:
    """The finished spans, once the last run's launch span is among them."""
    spans = list(traced.spans.get_finished_spans())
    done = any(
        s.name == "run chain_report" and (s.attributes or {}).get("tripwire.run.name") == last_run
        for s in spans
    )
    return spans if done else None


def _span_id(traceparent: str) -> int:
    return int(traceparent.split("-")[2], 16)


async def test_a_worker_configured_by_otel_variables_exports_the_chain_over_otlp(
    traced: Traced,
    engine_env: dict[str, str],
    otlp_sink: OtlpSink,
    tmp_path: Path,
) -> None:
    # Given a `tripwire worker` process set up by the standard variables alone, exporting to
    # a real OTLP/HTTP receiver
    env = os.environ | {
        "TRIPWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}",
        "CHAIN_OUT": str(tmp_path / "chain.jsonl"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_sink.endpoint,
        "OTEL_SERVICE_NAME": "tripwire-worker",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms between the exporter's batches
    }
    log = tmp_path / "worker.log"
    with worker([FLOWS], env, log) as process:
        await ready(process, log)
        # When a job publishes the two events inside its span
        with traced.provider.get_tracer("etl").start_as_current_span("nightly load") as job:
            await publish.aio("chain_orders", {"day": "2031-07-08"})
            await publish.aio("chain_customers", {"day": "2031-07-08"})
        # Then the worker exports the spans of both runs, all in the job's trace
        exported = await eventually(
            lambda: _exported_through(otlp_sink, "run chain_report"),
            "the worker's spans at the receiver",
            timeout=90,
        )
    trace_id = base64.b64decode(exported[0]["traceId"]).hex()
    assert trace_id == f"{job.get_span_context().trace_id:032x}"
    assert {base64.b64decode(s["traceId"]).hex() for s in exported} == {trace_id}
    assert {s["service"] for s in exported} == {"tripwire-worker"}
    names = {s["name"] for s in exported}
    for flow in ("chain_join", "chain_report"):
        assert {f"fire {flow}.trigger", f"admit {flow}", f"run {flow}", "attempt 1"} <= names


def _exported_through(sink: OtlpSink, name: str) -> list[dict[str, Any]] | None:
    """The spans received, once one named ``name`` is among them."""
    spans = sink.spans()
    return spans if any(s["name"] == name for s in spans) else None

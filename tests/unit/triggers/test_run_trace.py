"""The run process in its run's trace: the engine gives it ``TRACEPARENT`` (and
``TRACESTATE``), ``current.traceparent`` says it, and the flow runs with it as
OpenTelemetry's current context, so that the flow's own spans are children of its
attempt; with ``OTEL_*`` configured, the process exports them before it ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from triggers.current import RunContext, current

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACE = f"00-{TRACE_ID}-{PARENT_ID}-01"

FLOW = """
import json, sys
from triggers import current

def flow(out: str = "") -> None:
    seen = {"current": current.traceparent, "state": current.tracestate}
    seen["imported"] = "opentelemetry.context" in sys.modules
    if seen["imported"]:
        from opentelemetry import trace
        with trace.get_tracer("flow").start_as_current_span("load rows") as span:
            seen["trace"] = format(span.get_span_context().trace_id, "032x")
    with open(out, "w") as file:
        json.dump(seen, file)
"""


def run_process(tmp_path: Path, **env: str) -> tuple[dict[str, object], str]:
    """Run the flow above in ``python -m triggers.run`` with ``env``; return what it saw
    and what the process printed."""
    (tmp_path / "flows.py").write_text(FLOW)
    out = tmp_path / "seen.json"
    context = tmp_path / "context.json"
    context.write_text(
        json.dumps(
            {
                "run_name": "flow-a",
                "project": "p",
                "domain": "d",
                "flow": "flow",
                "entrypoint": {"function": "flow", "path": str(tmp_path / "flows.py")},
                "parameters": {"out": str(out)},
                "events": [],
            }
        )
    )
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRIPWIRE_", "TRACE"))
    }
    done = subprocess.run(
        [sys.executable, "-m", "triggers.run", "--context", str(context), "--result", "r.json"],
        env={**clean, "TRIPWIRE_HOME": str(tmp_path), "TRIPWIRE_RUN_CONTEXT": str(context), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text()), done.stdout


def test_a_flow_runs_in_its_runs_trace_and_its_spans_are_exported_before_the_end(
    tmp_path: Path,
) -> None:
    seen, printed = run_process(
        tmp_path, TRACEPARENT=TRACE, TRACESTATE="rojo=1", OTEL_TRACES_EXPORTER="console"
    )
    assert seen == {"current": TRACE, "state": "rojo=1", "imported": True, "trace": TRACE_ID}
    # the console exporter's span, a child of the attempt's
    assert '"name": "load rows"' in printed
    assert f'"parent_id": "0x{PARENT_ID}"' in printed


def test_a_run_without_a_trace_context_imports_no_opentelemetry(tmp_path: Path) -> None:
    seen, _ = run_process(tmp_path)
    assert seen == {"current": None, "state": None, "imported": False}


def test_current_says_no_trace_context_outside_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEPARENT", TRACE)
    monkeypatch.setattr(current, "_context", None)
    monkeypatch.setattr(current, "_loaded", True)
    assert current.traceparent is None
    context = RunContext(run_name="r", project="p", domain="d", flow="f", parameters={}, events=())
    monkeypatch.setattr(current, "_context", context)
    assert current.traceparent == TRACE

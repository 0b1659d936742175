"""A flow that says what it knows of its trace (tests/integration/test_run_tracing.py)."""

import json
import os
import sys
from pathlib import Path

from triggers import current, trigger


@trigger(event="traced_requested", retries=1, retry_backoff="0.1s")
def traced(out: str = "", fail_times: int = 0) -> None:
    """Adds a line to ``out`` per attempt: its TRACEPARENT, current.traceparent, whether
    OpenTelemetry was imported for it, and the span OpenTelemetry's current context holds.
    Fails its first ``fail_times`` attempts."""
    seen = {
        "env": os.environ.get("TRACEPARENT"),
        "current": current.traceparent,
        "imported": "opentelemetry.context" in sys.modules,
    }
    from opentelemetry import trace  # the flow's own use of the API, after the check

    span = trace.get_current_span().get_span_context()
    seen["span"] = format(span.span_id, "016x") if span.is_valid else None
    path = Path(out)
    with path.open("a") as lines:
        lines.write(json.dumps(seen) + "\n")
    if len(path.read_text().splitlines()) <= fail_times:
        raise ValueError("this attempt fails on purpose")

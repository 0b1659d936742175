"""Two flows in a chain, each noting the trace context its process got
(tests/integration/test_trace_chain.py): one after two correlated events, one after it."""

import json
import os
from pathlib import Path

from triggers import current, trigger, trigger_on_finish


def _note(flow: str) -> None:
    with Path(os.environ["CHAIN_OUT"]).open("a") as out:
        out.write(json.dumps({"flow": flow, "traceparent": current.traceparent}) + "\n")


@trigger(events=["chain_orders", "chain_customers"], correlate_by="$.day", within="1h")
def chain_join(day: str = "") -> None:
    _note("chain_join")


@trigger_on_finish(flow="chain_join")
def chain_report() -> None:
    _note("chain_report")

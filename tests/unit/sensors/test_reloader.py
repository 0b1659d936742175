"""What `tripwire dev` says of a change of the flows: one line each (pure)."""

from __future__ import annotations

from typing import Any

from sensors.reloader import flow_changes
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.spec import FlowSpec


def _spec(func: Any) -> FlowSpec:
    return flow_spec(func)


def test_a_parameter_added_or_removed_is_one_change_each() -> None:
    @trigger(event="ev")
    def etl(when: str = "x") -> None: ...

    before = _spec(etl)

    @trigger(event="ev")  # type: ignore[no-redef]  # the same flow, edited
    def etl(days: int = 3) -> None: ...

    assert flow_changes([before], [_spec(etl)]) == ["~ etl: + parameters[days], - parameters[when]"]


def test_a_renamed_event_reads_as_what_the_flow_waits_for() -> None:
    @trigger(event="orders_loaded", within="1h")
    def report() -> None: ...

    before = _spec(report)

    @trigger(event="orders_ready", within="2h")  # type: ignore[no-redef]
    def report() -> None: ...

    assert flow_changes([before], [_spec(report)]) == [
        "~ report: waits for orders_loaded → orders_ready, within 1h → 2h"
    ]


def test_flows_added_and_retired_name_what_they_wait_for() -> None:
    @trigger(events=["a", "b"])
    def joined() -> None: ...

    @trigger(event="c")
    def single() -> None: ...

    assert flow_changes([_spec(single)], [_spec(joined)]) == [
        "+ joined <- a & b",
        "- single (retired)",
    ]

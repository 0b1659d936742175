"""@trigger_on_finish as declared, and what `current.run` makes of a lifecycle event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from triggers import DeclarationError, trigger_on_finish
from triggers.current import TriggerEvent, UpstreamRun
from triggers.declarations import flow_spec
from triggers.spec import RUN_EVENT_TYPE, finished_event


def test_a_flow_waits_for_the_success_of_its_upstream_flow() -> None:
    @trigger_on_finish(flow="extract", retries=1)
    def report(rows: int = 0) -> None: ...

    [trig] = flow_spec(report).triggers
    [dep] = trig.dependencies
    assert (dep.name, dep.dep, dep.parameters) == (f"{RUN_EVENT_TYPE}:extract", "extract", {})
    [only] = dep.filters
    assert (only.path, only.op, only.value) == ("$.phase", "in", ["SUCCEEDED"])  # type: ignore[union-attr]
    assert trig.retries == 1


def test_several_upstream_flows_must_all_finish_within_the_window() -> None:
    @trigger_on_finish(flows=["a", "b"], on=["FAILED", "TIMED_OUT"], within="2h")
    def hook() -> None: ...

    [trig] = flow_spec(hook).triggers
    assert [d.name for d in trig.dependencies] == [finished_event("a"), finished_event("b")]
    assert trig.within.total_seconds() == 7200
    assert trig.dependencies[0].filters[0].value == ["FAILED", "TIMED_OUT"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of them"),
        ({"flow": "a", "flows": ["b"]}, "exactly one of them"),
        ({"flow": "not a name"}, "must be flow names"),
        ({"flow": "a", "on": ["RUNNING"]}, "must name final phases"),
        ({"flow": "a", "retries": -1}, "whole number from 0 to 100"),
    ],
)
def test_bad_declarations_say_what_to_write(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DeclarationError, match=message):

        @trigger_on_finish(**kwargs)  # type: ignore[arg-type]
        def flow() -> None: ...


def test_the_bare_decorator_is_refused_with_the_called_form() -> None:
    def flow() -> None: ...

    with pytest.raises(DeclarationError, match=r"@trigger_on_finish\(flow='upstream_flow'\)"):
        trigger_on_finish(flow)  # type: ignore[arg-type]


def test_current_run_reads_the_upstream_run_from_its_lifecycle_event() -> None:
    at = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    event = TriggerEvent(
        name=finished_event("extract"),
        id="p.d.phase-9",
        time=at,
        payload={
            "execution_id": {"project": "p", "domain": "d", "name": "extract-1"},
            "flow": "extract",
            "phase": "SUCCEEDED",
            "occurred_at": at.isoformat(),
            "output_uri": "file:///runs/extract-1",
            "error": None,
        },
    )
    run = UpstreamRun.from_event(event)
    assert run is not None
    assert (run.name, run.flow, run.phase, run.finished_at) == (
        "extract-1",
        "extract",
        "SUCCEEDED",
        at,
    )
    plain = TriggerEvent(name="orders", id="1", time=None, payload={"execution_id": {}})
    assert UpstreamRun.from_event(plain) is None

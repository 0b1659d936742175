"""@trigger's thresholds, sequences, absences, debounce and wildcards: accepted and refused."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from triggers import DeclarationError, trigger, trigger_on_finish
from triggers.declarations import flow_spec
from triggers.spec import AbsenceSpec, TriggerSpec


def spec_of(**kwargs: Any) -> TriggerSpec:
    @trigger(**kwargs)
    def flow(day: str = "", rows: int = 0) -> None: ...

    return flow_spec(flow).triggers[0]


def test_each_kind_is_recorded_on_the_trigger() -> None:
    assert spec_of(event="order_failed", threshold=5, within="10m").threshold == 5
    sequence = spec_of(sequence=["extract_done", "validate_done"], within="1h")
    assert sequence.sequence and [d.name for d in sequence.dependencies] == [
        "extract_done",
        "validate_done",
    ]
    absent = spec_of(absent="data_updated", within="24h", tz="Europe/Berlin")
    assert absent.absence == AbsenceSpec(dep="data_updated", tz="Europe/Berlin")
    after = spec_of(absent="load_finished", after="load_started", within="1h")
    assert after.absence == AbsenceSpec(dep="load_finished", after="load_started")
    assert [d.name for d in after.dependencies] == ["load_started", "load_finished"]
    assert spec_of(event="e", debounce="30s").debounce == timedelta(seconds=30)
    assert [s.kind for s in (sequence, absent, after)] == ["sequence", "absence", "absence"]


def test_debounce_applies_to_trigger_on_finish_too() -> None:
    @trigger_on_finish(flow="upstream", debounce="1m")
    def flow() -> None: ...

    assert flow_spec(flow).triggers[0].debounce == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"absent": "x", "within": "5s"}, "too short for an absence; the shortest is 10s"),
        ({"absent": "x"}, "absent= needs within=..."),
        ({"event": "x", "after": "y"}, "after= and tz= go with absent="),
        ({"event": "x", "tz": "UTC"}, "after= and tz= go with absent="),
        ({"absent": "x", "within": "1h", "tz": "Mars/Base"}, "not an IANA time zone"),
        ({"event": "x", "events": ["y"]}, "exactly one of event="),
        ({"sequence": ["a"]}, "a sequence needs at least two events"),
        ({"sequence": ["a", {"name": "a", "dep": "b"}]}, "names each event once"),
        ({"events": ["a", "b"], "threshold": 2, "conditions": "a || b"}, "not to a threshold"),
        ({"event": "a", "threshold": 0}, "threshold=0 must be a whole number"),
        ({"event": "a", "threshold": True}, "must be a whole number"),
        ({"absent": "x", "within": "1h", "debounce": "1s"}, "debounce applies to event triggers"),
        ({"absent": "x", "within": "1h", "correlate_by": "$.day"}, "correlate_by needs after="),
        ({"absent": "x", "after": "x", "within": "1h"}, "are both 'x'"),
        ({"event": "*"}, "'*' is not a wildcard"),
        ({"event": "a*b*"}, "'a*b*' is not a wildcard"),
        ({"event": "a", "debounce": "soon"}, "debounce='soon' is not a duration"),
    ],
)
def test_a_bad_declaration_fails_at_decoration_saying_what_to_write(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeclarationError, match=re.escape(message)):
        spec_of(**kwargs)


def test_a_wall_clock_absence_refuses_parameters_no_event_can_fill() -> None:
    with pytest.raises(DeclarationError, match=r"parameters \['table'\] have no default"):

        @trigger(absent="data_updated", within="1d")
        def flow(table: str) -> None: ...


def test_a_spec_from_the_store_is_validated_again() -> None:
    # A spec edited by hand (or by an older version) fails when loaded, not when firing
    with pytest.raises(ValueError, match="a trigger is one of threshold, sequence and absent"):
        TriggerSpec.model_validate(
            {
                "name": "t",
                "dependencies": [{"name": "a", "dep": "a"}, {"name": "b", "dep": "b"}],
                "threshold": 2,
                "sequence": True,
            }
        )

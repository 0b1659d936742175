"""Mappings that matched nothing: the parameter keeps its default, and the run says so."""

from __future__ import annotations

from datetime import timedelta

from sensors.core.mapping import extract_parameters, unmatched
from tests.fixtures.core import T0, Engine, arrival
from triggers import trigger
from triggers.envelope import Envelope
from triggers.spec import EventDependency

EVENT = Envelope(name="data_updated", id="ev-1", source="s", time=None, payload={"cfg": {"x": 1}})


def found_and_missed(mapping: dict[str, str] | None) -> dict[str, str]:
    dependency = EventDependency(name="data_updated", dep="data_updated", parameters=mapping)
    names = list(mapping or ["window", "cfg"])
    return unmatched(dependency, extract_parameters(dependency, EVENT, names))


def test_a_misspelt_path_field_or_missing_attribute_is_unmatched_with_its_source() -> None:
    mapping = {"window": "$.cfg.dayz", "table": "tabel", "at": "$event.time", "x": "$.cfg.x"}
    assert found_and_missed(mapping) == {
        "window": "$.cfg.dayz",
        "table": "tabel",
        "at": "$event.time",
    }


def test_a_mapping_that_matched_everything_leaves_nothing_unmatched() -> None:
    assert found_and_missed({"x": "$.cfg.x", "name": "$event.name"}) == {}


def test_default_matching_counts_no_missing_field_as_unmatched() -> None:
    assert found_and_missed(None) == {}


@trigger(event={"name": "data_updated", "parameters": {"window": "$.cfg.days", "rows": "rows"}})
def refresh(window: int = 3, rows: int = 0, flag: bool = True) -> None: ...


@trigger(
    events=[
        {"name": "orders", "parameters": {"day": "$.dayz", "flag": "$.flag"}},
        {"name": "customers", "parameters": {"day": "$.day"}},
    ],
    within="1h",
)
def join(day: str = "none", flag: bool = True) -> None: ...


def test_a_run_lists_the_mappings_that_matched_nothing_with_the_defaults_kept() -> None:
    # Given a sensor mapping window from $.cfg.days, and an event with $.cfg.dayz instead
    event = arrival("data_updated", "e1", cfg={"dayz": 7}, rows=5)
    # When it fires
    [fire] = Engine(refresh).feed([event]).fires
    # Then the run keeps the default and its trigger info names the mapping and the event
    assert fire.parameters == {"window": 3, "rows": 5, "flag": True}
    assert fire.info == {
        "unmatched": [
            {
                "parameter": "window",
                "default": 3,
                "source": "$.cfg.days",
                "event": "data_updated",
                "event_id": "e1",
            }
        ]
    }


def test_a_run_whose_mappings_all_matched_has_no_trigger_info() -> None:
    event = arrival("data_updated", "e1", cfg={"days": 7}, rows=5)
    [fire] = Engine(refresh).feed([event]).fires
    assert fire.parameters["window"] == 7 and fire.info is None


def test_a_parameter_another_event_filled_is_not_unmatched() -> None:
    # Given orders maps day from a misspelt $.dayz and flag from a field it lacks, and
    # customers maps day correctly
    engine = Engine(join)
    engine.feed([arrival("orders", "o1", day="mon")])
    later = T0 + timedelta(minutes=1)
    # When both arrived
    [fire] = engine.feed([arrival("customers", "c1", at=later, day="mon")]).fires
    # Then day came from customers, and only flag, which nothing filled, kept its default
    assert fire.parameters == {"day": "mon", "flag": True}
    assert fire.info is not None
    assert [(u["parameter"], u["default"], u["event_id"]) for u in fire.info["unmatched"]] == [
        ("flag", True, "o1")
    ]

"""Payload -> parameters: default matching, explicit fields, JSONPath and event attributes."""

from __future__ import annotations

from datetime import UTC, datetime

from sensors.core.mapping import extract_parameters
from triggers.envelope import Envelope
from triggers.spec import EventDependency

EVENT = Envelope(
    name="orders",
    id="ev-1",
    source="etl://x",
    time=datetime(2026, 11, 23, 6, tzinfo=UTC),
    payload={
        "rows": 5,
        "table": "t",
        "meta": {"ts": "2026-11-23"},
        "items": [{"id": 1}, {"id": 2}],
    },
)


def dep(parameters: dict[str, str] | None = None) -> EventDependency:
    return EventDependency(name="orders", dep="orders", parameters=parameters)


def test_default_matching_fills_parameters_named_like_payload_fields() -> None:
    assert extract_parameters(dep(), EVENT, ["rows", "table", "absent"]) == {
        "rows": 5,
        "table": "t",
    }


def test_an_explicit_mapping_turns_default_matching_off() -> None:
    assert extract_parameters(dep({"count": "rows"}), EVENT, ["count", "table"]) == {"count": 5}


def test_a_jsonpath_with_one_match_gives_the_value() -> None:
    assert extract_parameters(dep({"day": "$.meta.ts"}), EVENT, ["day"]) == {"day": "2026-11-23"}


def test_a_jsonpath_with_several_matches_gives_the_list() -> None:
    assert extract_parameters(dep({"ids": "$.items[*].id"}), EVENT, ["ids"]) == {"ids": [1, 2]}


def test_a_jsonpath_or_field_with_no_match_leaves_the_default() -> None:
    mapping = {"day": "$.meta.nothing", "other": "missing_field"}
    assert extract_parameters(dep(mapping), EVENT, ["day", "other"]) == {}


def test_event_attributes_are_readable() -> None:
    mapping = {"i": "$event.id", "n": "$event.name", "t": "$event.time", "s": "$event.source"}
    assert extract_parameters(dep(mapping), EVENT, list(mapping)) == {
        "i": "ev-1",
        "n": "orders",
        "t": "2026-11-23T06:00:00+00:00",
        "s": "etl://x",
    }


def test_a_jsonpath_can_read_a_falsy_value() -> None:
    event = Envelope(name="e", id="1", source="s", time=None, payload={"flag": False, "n": 0})
    mapping = {"flag": "$.flag", "n": "n"}
    assert extract_parameters(dep(mapping), event, list(mapping)) == {"flag": False, "n": 0}

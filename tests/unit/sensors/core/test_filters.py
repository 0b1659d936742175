"""Evaluating filters: typed comparisons, operators, time of day, correlation keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sensors.core.filters import correlation_key, rejection
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.envelope import Envelope

NOON_UTC = datetime(2026, 11, 23, 12, tzinfo=UTC)


def check(
    filters: list[Any], payload: dict[str, Any], operator: str = "and", at: datetime = NOON_UTC
) -> str | None:
    @trigger(event={"name": "e", "filters": filters, "filters_operator": operator})
    def flow() -> None: ...

    [dep] = flow_spec(flow).triggers[0].dependencies
    envelope = Envelope(name="e", id="1", source="s", time=at, payload=payload)
    return rejection(dep, envelope, at)


@pytest.mark.parametrize(
    ("flt", "payload", "passes"),
    [
        ("$.n > 5", {"n": 6}, True),
        ("$.n > 5", {"n": "6"}, True),  # a numeric string compares as a number
        ("$.n > 5", {"n": "six"}, False),
        ("$.n == 5", {"n": 5.0}, True),
        ("$.n == 5", {"n": True}, False),  # booleans are not numbers
        ("$.ok == true", {"ok": True}, True),
        ("$.ok == true", {"ok": 1}, False),
        ("$.day >= 2026-11-01", {"day": "2026-11-23"}, True),  # ISO dates as dates
        ('$.at < "2026-11-23T12:00:00+01:00"', {"at": "2026-11-23T11:30:00Z"}, False),
        ('$.at == "2026-11-23T11:00:00Z"', {"at": "2026-11-23T12:00:00+01:00"}, True),
        ('$.s < "b"', {"s": "a"}, True),  # plain strings compare as strings
        ('$.r in ["eu", "us"]', {"r": "us"}, True),
        ('$.r in ["eu", "us"]', {"r": "apac"}, False),
        ("$.name regex ^ord-\\d+$", {"name": "ord-42"}, True),
        ("$.name regex ^ord-\\d+$", {"name": "x-42"}, False),
        ("$.x exists", {"x": None}, True),
        ({"path": "$.x", "op": "exists", "value": False}, {}, True),
        ("$.items[*].qty > 10", {"items": [{"qty": 1}, {"qty": 20}]}, True),  # any match
        ("$.n != 5", {"n": 4}, True),
    ],
)
def test_filters_compare_values_as_their_types(
    flt: Any, payload: dict[str, Any], passes: bool
) -> None:
    assert (check([flt], payload) is None) == passes


def test_a_missing_field_fails_with_the_path_in_the_reason() -> None:
    assert check(["$.amount > 5"], {}) == "$.amount is missing"


def test_the_reason_shows_the_value_and_the_comparison() -> None:
    assert check(["$.amount >= 100"], {"amount": 5}) == "$.amount = 5 is not >= 100"


def test_and_needs_every_filter_and_or_needs_one() -> None:
    filters = ["$.a == 1", "$.b == 2"]
    assert check(filters, {"a": 1, "b": 2}) is None
    assert check(filters, {"a": 1, "b": 3}) == "$.b = 3 is not == 2"
    assert check(filters, {"a": 1, "b": 3}, "or") is None
    assert check(filters, {"a": 0, "b": 0}, "or") == "$.a = 0 is not == 1; $.b = 0 is not == 2"


@pytest.mark.parametrize(
    ("between", "tz", "at", "passes"),
    [
        ("09:00-17:00", "UTC", NOON_UTC, True),
        ("09:00-17:00", "Asia/Tokyo", NOON_UTC, False),  # 21:00 in Tokyo
        ("20:00-06:00", "Asia/Tokyo", NOON_UTC, True),  # spans midnight
        ("13:00-14:00", "Europe/Paris", NOON_UTC, True),  # 13:00 in Paris
    ],
)
def test_time_of_day_filters_use_the_event_time_in_their_zone(
    between: str, tz: str, at: datetime, passes: bool
) -> None:
    reason = check([{"between": between, "tz": tz}], {}, at=at)
    assert (reason is None) == passes
    if not passes:
        assert "is outside" in reason  # type: ignore[operator]


def test_correlation_keys_are_canonical_json_and_none_when_missing() -> None:
    envelope = Envelope(
        name="e",
        id="1",
        source="s",
        time=None,
        payload={"date": "2026-11-23", "obj": {"b": 1, "a": 2}},
    )
    assert correlation_key("$.date", envelope) == '"2026-11-23"'
    assert correlation_key("$.obj", envelope) == '{"a":2,"b":1}'
    assert correlation_key("$.nope", envelope) is None

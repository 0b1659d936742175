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


@pytest.mark.parametrize(
    ("op", "value", "passing", "failing"),
    [
        # Each JSON value is of its own type: no numeric strings, no dates
        ("==", 5, [5, 5.0], ["5", True, None, [5]]),
        ("!=", 5, ["5", None, True, {"a": 5}, 4], [5, 5.0]),
        ("==", "5", ["5"], [5, 5.0]),
        ("!=", "x", [None, 1, False, "y"], ["x"]),
        ("in", [1, "b"], [1.0, "b"], ["1", "a", True]),
        (">", 5, [6, 5.5], ["7", True, None]),
        ("<", "b", ["a", "B"], [1, None, "c"]),
        (">=", "2026-11-01", ["2026-11-02", "3"], ["2026-1-5", 20261102]),  # text, not dates
        ("regex", "^2", ["200"], [200, 2.5, True]),
        ("==", True, [True], [1, "true"]),
        ("==", {"a": [1]}, [{"a": [1.0]}], [{"a": [True]}, {"a": ["1"]}, {"a": [1], "b": 2}]),
    ],
)
def test_strict_filters_compare_json_values_of_the_same_type_only(
    op: str, value: Any, passing: list[Any], failing: list[Any]
) -> None:
    flt = {"path": "$.v", "op": op, "value": value, "strict": True}
    assert [check([flt], {"v": v}) is None for v in passing] == [True] * len(passing)
    assert [check([flt], {"v": v}) is None for v in failing] == [False] * len(failing)


def test_a_strict_filters_reason_says_it_is_strict() -> None:
    flt = {"path": "$.n", "op": ">", "value": 5, "strict": True}
    assert check([flt], {"n": "7"}) == '$.n = "7" is not > 5 (strict)'


def test_an_integer_beyond_the_float_range_compares_as_infinite() -> None:
    # JSON parsers read it so; payloads keep big integers exact, which float() refuses
    huge = 10**400
    assert check(["$.n > 5"], {"n": huge}) is None
    assert check([{"path": "$.n", "op": "<", "value": 5, "strict": True}], {"n": -huge}) is None


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

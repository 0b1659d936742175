"""Signal values: what a wait accepts, and text typed for one (CLI, web form)."""

from __future__ import annotations

import pytest

from triggers.waits import check_value, parse_value


def test_an_int_is_a_float_but_a_bool_is_not_an_int() -> None:
    assert check_value("float", 2, what="x") == 2.0
    with pytest.raises(TypeError):
        check_value("int", True, what="x")
    with pytest.raises(TypeError, match="not dict"):
        check_value("str", {"a": 1}, what="x")


@pytest.mark.parametrize(
    ("text", "expected_type", "value"),
    [("Yes", "bool", True), ("off", "bool", False), ("42", "int", 42), ("0.5", "float", 0.5)],
)
def test_text_is_parsed_as_the_type_the_run_waits_for(
    text: str, expected_type: str, value: object
) -> None:
    assert parse_value(text, expected_type) == value


def test_text_that_is_not_the_type_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match=r"expects a bool, and 'maybe' is not one; e\.g\. true"):
        parse_value("maybe", "bool")

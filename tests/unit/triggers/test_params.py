"""Parameter types travel as data and coerce event values the way pydantic does."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import pytest

from triggers.errors import DeclarationError, TriggerError
from triggers.params import ParameterSchema, ParamSpec, describe_type, rebuild_type


@pytest.mark.parametrize(
    "annotation",
    [
        str,
        int,
        float,
        bool,
        date,
        datetime,
        Decimal,
        uuid.UUID,
        Any,
        list[int],
        dict[str, float],
        int | None,
        str | int,
        Literal["a", "b"],
        list[dict[str, int]],
        tuple[int, ...],
    ],
)
def test_a_supported_type_survives_the_trip_to_the_engine(annotation: Any) -> None:
    ref = describe_type(annotation, where="p")
    assert describe_type(rebuild_type(ref), where="p") == ref


@pytest.mark.parametrize("annotation", [set, tuple[int, str], bytes, type, Literal[1.5]])
def test_an_unsupported_type_is_refused_listing_what_is_supported(annotation: Any) -> None:
    with pytest.raises(DeclarationError, match=r"cannot carry.*use one of: str, int"):
        describe_type(annotation, where="parameter 'x'")


def flow(table: str, rows: int = 0, day: date | None = None, tags: list[str] = ["a"]) -> None:  # noqa: B006
    pass


def test_param_specs_record_types_defaults_and_required_parameters() -> None:
    specs = {s.name: s for s in ParamSpec.of(flow)}
    assert specs["table"].required and specs["table"].type == {"t": "str"}
    assert specs["rows"].default == 0 and not specs["rows"].required
    assert specs["tags"].default == ["a"]


def test_variadic_parameters_are_refused() -> None:
    def bad(*args: int) -> None: ...

    with pytest.raises(DeclarationError, match="keyword-passable"):
        ParamSpec.of(bad)


NOT_JSON = object()


def test_a_default_that_is_not_json_is_refused() -> None:
    def bad(when: Any = NOT_JSON) -> None: ...

    with pytest.raises(DeclarationError, match=r"default of parameter 'when'.*not JSON"):
        ParamSpec.of(bad)


def test_coercion_converts_strings_and_keeps_defaults_for_what_is_missing() -> None:
    schema = ParameterSchema(ParamSpec.of(flow))
    values = schema.coerce({"table": "sales", "rows": "42", "day": "2026-11-23"})
    assert values == {"table": "sales", "rows": 42, "day": "2026-11-23", "tags": ["a"]}


def test_a_value_that_does_not_fit_names_the_parameter_type_and_value() -> None:
    schema = ParameterSchema(ParamSpec.of(flow))
    with pytest.raises(TriggerError) as caught:
        schema.coerce({"table": "t", "rows": "many"})
    assert '''parameter 'rows' expects int, got "many"''' in str(caught.value)


def test_a_required_parameter_that_nothing_fills_is_a_failure_with_the_fix() -> None:
    schema = ParameterSchema(ParamSpec.of(flow))
    with pytest.raises(TriggerError, match=r"'table' is required.*give the parameter a default"):
        schema.coerce({})


def test_every_problem_is_reported_at_once() -> None:
    schema = ParameterSchema(ParamSpec.of(flow))
    with pytest.raises(TriggerError) as caught:
        schema.coerce({"rows": "x", "day": "not a date"})
    message = str(caught.value)
    assert "'table'" in message and "'rows'" in message and "'day'" in message

"""Declared filters: the accepted forms and the errors for the rest."""

from __future__ import annotations

from datetime import time

import pytest

from triggers import DeclarationError, trigger
from triggers.declarations import flow_spec
from triggers.filters import Filter, TimeOfDay, parse_filter


@pytest.mark.parametrize(
    ("compact", "expected"),
    [
        ("$.amount >= 100", Filter(path="$.amount", op=">=", value=100)),
        ('$.region in ["eu", "us"]', Filter(path="$.region", op="in", value=["eu", "us"])),
        ("$.name regex ^ab+c$", Filter(path="$.name", op="regex", value="^ab+c$")),
        ("$.flag == true", Filter(path="$.flag", op="==", value=True)),
        ("$.x exists", Filter(path="$.x", op="exists", value=True)),
        ("$.status != done", Filter(path="$.status", op="!=", value="done")),
    ],
)
def test_the_compact_string_form_parses_values_as_json_or_strings(
    compact: str, expected: Filter
) -> None:
    assert parse_filter(compact, where="w") == expected


def test_a_strict_filter_is_declared_in_the_dict_form_and_left_out_of_the_json_when_off() -> None:
    strict = parse_filter({"path": "$.n", "op": ">", "value": 5, "strict": True}, where="w")
    assert strict == Filter(path="$.n", op=">", value=5, strict=True)
    assert strict.model_dump(mode="json")["strict"] is True
    # Specs of filters declared before strict existed keep their JSON, and so their digest
    assert parse_filter("$.n > 5", where="w").model_dump_json() == (
        '{"path":"$.n","op":">","value":5}'
    )


def test_a_time_of_day_filter_takes_a_window_and_a_zone() -> None:
    parsed = parse_filter({"between": "22:00-06:00", "tz": "Europe/Paris"}, where="w")
    assert parsed == TimeOfDay(start=time(22), stop=time(6), tz="Europe/Paris")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("amount > 5", "is not '<\\$.jsonpath> <op> <value>'"),
        ({"path": "$.a", "op": "~"}, "unknown filter op '~'"),
        ({"path": "a", "op": "=="}, "must be a JSONPath"),
        ({"path": "$.a", "op": "in", "value": 3}, "'in' takes a list"),
        ({"path": "$.a", "op": "regex", "value": "("}, "invalid regex"),
        ({"path": "$.a", "op": ">", "value": True}, "compares numbers"),
        ({"path": "$.a", "op": "exists", "value": "yes"}, "true or false"),
        ({"between": "9-5"}, "HH:MM-HH:MM"),
        ({"between": "09:00-17:00", "tz": "Mars/Olympus"}, "bad time-of-day"),
        ({"path": "$.a", "op": "==", "extra": 1}, "nothing else"),
        ({"path": "$.a", "op": "==", "value": 1, "strict": "yes"}, "'strict' takes true or false"),
        ({"path": "$.a", "op": "exists", "strict": True}, "'exists' compares nothing"),
        (42, "a filter is a dict"),
    ],
)
def test_a_malformed_filter_is_refused_with_the_accepted_form(item: object, message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        parse_filter(item, where="w")


def test_filters_and_their_operator_are_declared_per_dependency() -> None:
    @trigger(
        event={
            "name": "orders",
            "filters": ["$.amount > 5", "$.vip == true"],
            "filters_operator": "or",
        }
    )
    def flow() -> None: ...

    [dep] = flow_spec(flow).triggers[0].dependencies
    assert len(dep.filters) == 2 and dep.filters_operator == "or"


def test_a_bad_filters_operator_is_refused() -> None:
    with pytest.raises(DeclarationError, match="'and' or 'or'"):

        @trigger(event={"name": "orders", "filters": [], "filters_operator": "xor"})
        def flow() -> None: ...


def test_correlate_by_takes_one_path_or_one_per_dependency() -> None:
    @trigger(events=["a", "b"], correlate_by={"a": "$.date", "b": "$.day"})
    def flow() -> None: ...

    assert flow_spec(flow).triggers[0].correlate_by == {"a": "$.date", "b": "$.day"}
    with pytest.raises(DeclarationError, match=r"missing \['b'\]"):

        @trigger(events=["a", "b"], correlate_by={"a": "$.date"})
        def partial() -> None: ...

    with pytest.raises(DeclarationError, match="must be a JSONPath"):

        @trigger(events=["a", "b"], correlate_by="date")
        def not_a_path() -> None: ...

"""Argo dependency filters brought over: each kind, value and operator decides events as
Argo's filter code does (checked with the engine's own filter evaluation), or the trigger
is refused with the reason."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fixtures.argo import (
    dependency,
    passes,
    refusal,
    texts,
    with_dependencies,
    with_filters,
)
from triggers.spec import EventDependency

# --- data filters -----------------------------------------------------------------------


def test_string_values_are_regexes_searched_and_any_one_passes() -> None:
    # Argo's filter-with-data-simple-1 example
    dep = dependency(
        with_dependencies("""
        - name: test-dep
          eventSourceName: webhook
          eventName: example
          filters:
            data:
              - path: body.message
                type: string
                value:
                  - "hello"
                  - "hey"
    """)
    )
    assert passes(dep, {"message": "hello"}) and passes(dep, {"message": "oh hey you"})
    assert not passes(dep, {"message": "this is my first webhook"})
    assert not passes(dep, {"other": "hello"})  # a missing path fails, as in Argo


def test_go_regex_classes_and_anchors_keep_their_go_meaning() -> None:
    dep = dependency(
        with_filters(
            r"""
            data:
              - path: body.code
                type: string
                value:
                  - '^\d{3}$'
    """
        )
    )
    assert passes(dep, {"code": "123"})
    assert not passes(dep, {"code": "123\n"})  # Go's $ is the very end of the text
    assert not passes(dep, {"code": "١٢٣"})  # Go's \d is ASCII


def test_a_string_filter_with_not_equal_passes_when_a_value_is_not_found() -> None:
    dep = dependency(
        with_filters(
            """
            data:
              - path: body.branch
                type: string
                comparator: "!="
                value:
                  - "^release/"
    """
        )
    )
    assert passes(dep, {"branch": "main"}) and not passes(dep, {"branch": "release/1.2"})


def test_numbers_compare_as_floats_with_the_comparator() -> None:
    dep = dependency(
        with_filters(
            """
            data:
              - path: body.value
                type: number
                comparator: ">"
                value:
                  - "50.0"
    """
        )
    )
    assert passes(dep, {"value": 50.5}) and passes(dep, {"value": "51"})
    assert not passes(dep, {"value": 50}) and not passes(dep, {"value": 49.99})


@pytest.mark.parametrize(
    ("comparator", "values", "passing", "failing"),
    [
        ("", ["1", "2"], [1, 2.0], [3]),
        ("=", ["3.14"], [3.14], [3.1]),
        ("!=", ["1"], [2], [1]),
        ("!=", ["1", "2"], [1, 2, 3], []),  # differs from one of two different values
        (">=", ["5", "3"], [3, 9], [2.9]),  # any value: the lowest bound
        ("<", ["5", "3"], [4.9], [5]),  # any value: the highest bound
        ("<=", ["2", "x", "9"], [2], [3]),  # Go stops at the first value it cannot parse
    ],
)
def test_number_filters_pass_when_any_value_compares_true(
    comparator: str, values: list[str], passing: list[float], failing: list[float]
) -> None:
    listed = "".join(f'\n                  - "{v}"' for v in values)
    dep = dependency(
        with_filters(f"""
            data:
              - path: body.n
                type: number
                comparator: "{comparator}"
                value:{listed}
    """)
    )
    assert [passes(dep, {"n": n}) for n in passing] == [True] * len(passing)
    assert [passes(dep, {"n": n}) for n in failing] == [False] * len(failing)


def test_bool_values_are_read_as_go_reads_booleans() -> None:
    dep = dependency(
        with_filters(
            """
            data:
              - path: body.ok
                type: bool
                value:
                  - "T"
    """
        )
    )
    assert passes(dep, {"ok": True}) and not passes(dep, {"ok": False})


@pytest.mark.parametrize(
    ("datum", "said"),
    [
        ('type: string\n  value: ["^2"]', "Argo matches the text gjson gives any value"),
        ('type: bool\n  value: ["true"]', "number other than 0; here only true passes"),
        ('type: bool\n  value: ["false"]', "('false', 'no', ''); here only false passes"),
        (
            'type: number\n  comparator: "<="\n  value: ["5"]',
            "false, null, objects, arrays and text that is not a number pass in Argo (read "
            "as 0) but not here; true pass in Argo (read as 1) but not here; a string is read "
            "as a number by Go in Argo and by Python here",
        ),
        ('type: number\n  comparator: ">"\n  value: ["5"]', "by Go in Argo and by Python here"),
    ],
)
def test_each_typed_data_filter_says_how_argos_reading_of_other_types_differs(
    datum: str, said: str
) -> None:
    # gjson reads a value of any type as the filter's type; tripwire's filters do not
    done = with_filters("data:\n" + textwrap.indent(f"- path: body.x\n  {datum}", "  "))
    [differs] = texts(done, "differs")
    assert differs.startswith("dependency 'd'.filters.data[0]: ") and said in differs
    assert done.source is not None and "# Differs (translated; worth knowing):" in done.source


def test_a_data_filter_that_passes_every_value_as_argos_does_says_nothing() -> None:
    done = with_filters("""
            data:
              - path: body.ok
                type: bool
                value: ["true", "false"]
              - path: body.n
                type: number
                comparator: "!="
                value: ["1", "2"]
    """)
    assert texts(done, "differs") == []
    assert passes(dependency(done), {"ok": None, "n": "x"})


def test_bool_and_number_filters_pass_only_their_own_types_and_say_what_argo_also_passes() -> None:
    # Argo's gjson reads null, 0 and "no" as false; the translation keeps JSON false only
    dep = dependency(
        with_filters("""
            data:
              - path: body.ok
                type: bool
                value: ["false"]
    """)
    )
    assert passes(dep, {"ok": False})
    assert [passes(dep, {"ok": v}) for v in (None, 0, "no", "false")] == [False] * 4


def test_data_filters_joined_by_or_pass_when_one_does() -> None:
    # Argo's data filter docs: dataLogicalOperator "or"
    dep = dependency(
        with_dependencies(
            """
        - name: sample-dependency
          eventSourceName: webhook
          eventName: sample-event
          filters:
            dataLogicalOperator: "or"
            data:
              - path: "a"
                type: "bool"
                value:
                  - "true"
              - path: "b.c"
                type: "number"
                value:
                  - "3.14"
              - path: "b.d"
                type: "string"
                value:
                  - "hello there"
    """,
            payload_root="",
        )
    )
    assert dep.filters_operator == "or"
    assert passes(dep, {"a": False, "b": {"c": 3.14}}) and passes(dep, {"b": {"d": "hello there"}})
    assert not passes(dep, {"a": False, "b": {"c": 1, "d": "bye"}})


@pytest.mark.parametrize(
    ("datum", "reason"),
    [
        ('type: number\n  value: ["abc"]', "'abc' is not a number Go can parse"),
        ('type: float\n  value: ["1"]', "type 'float' is not bool, number or string"),
        ('type: bool\n  value: ["yes"]', "'yes' is not a boolean Go can parse"),
        ('type: string\n  comparator: ">"\n  value: ["a"]', "compares with = or != only"),
    ],
)
def test_a_data_filter_argo_fails_for_every_event_refuses_the_trigger(
    datum: str, reason: str
) -> None:
    done = with_filters("data:\n" + textwrap.indent(f"- path: body.x\n  {datum}", "  "))
    assert reason in refusal(done) and "in Argo either" in refusal(done)


@pytest.mark.parametrize(
    ("datum", "reason"),
    [
        (
            'path: body.x\n  type: string\n  value: ["a"]\n  template: "{{ b64dec .Input }}"',
            "template",
        ),
        ('path: body.items.#.name\n  type: string\n  value: ["a"]', "gjson's '#'"),
        ('path: header.X-Token\n  type: string\n  value: ["a"]', "reads outside 'body'"),
        ('path: body.x\n  type: string\n  value: ["\\\\pL"]', "Unicode classes"),
        ('path: body.x\n  type: number\n  value: ["0x10"]', "write it as a decimal"),
    ],
)
def test_a_data_filter_with_no_exact_equivalent_refuses_the_trigger(
    datum: str, reason: str
) -> None:
    done = with_filters("data:\n" + textwrap.indent(f"- {datum}", "  "))
    assert reason in refusal(done)


def test_payload_root_empty_keeps_argo_paths_over_the_whole_event_data() -> None:
    done = with_filters(
        """
            data:
              - path: header.X-Kind
                type: string
                value: ["^push$"]
        """,
        payload_root="",
    )
    assert passes(dependency(done), {"header": {"X-Kind": "push"}})


def test_a_number_in_a_path_reads_an_array_element_and_says_so() -> None:
    done = with_filters(
        """
            data:
              - path: body.commits.0.author
                type: string
                value: ["^alice$"]
    """
    )
    assert passes(dependency(done), {"commits": [{"author": "alice"}, {"author": "bob"}]})
    assert any("array index" in t for t in texts(done, "differs"))


# --- expr, context and time filters, and how kinds combine -----------------------------


def test_expressions_translate_comparisons_joined_by_one_operator() -> None:
    # Argo's expr filter docs, with exprLogicalOperator "or"
    dep = dependency(
        with_dependencies("""
        - name: sample-dependency
          eventSourceName: webhook
          eventName: sample-event
          filters:
            exprLogicalOperator: "or"
            exprs:
              - expr: a =~ "^b"
                fields:
                  - name: a
                    path: body.a
              - expr: e == false
                fields:
                  - name: e
                    path: body.d.e
    """)
    )
    assert passes(dep, {"a": "bee"}) and passes(dep, {"a": "x", "d": {"e": False}})
    assert not passes(dep, {"a": "x", "d": {"e": True}})


def test_an_expression_and_its_fields_must_all_hold() -> None:
    dep = dependency(
        with_filters(
            """
            exprs:
              - expr: action == "end" && instances >= 2 && 10 > instances && !paused
                fields:
                  - name: action
                    path: body.action
                  - name: instances
                    path: body.instances
                  - name: paused
                    path: body.paused
    """
        )
    )
    event = {"action": "end", "instances": 2, "paused": False}
    assert passes(dep, event)
    assert not passes(dep, {**event, "action": "ending"})  # == is string equality
    assert not passes(dep, {**event, "instances": 10}) and not passes(
        dep, {**event, "paused": True}
    )


def expr_filter(expr: str) -> EventDependency:
    """The dependency of one expr filter over the field ``a`` (at body.a)."""
    return dependency(
        with_filters(f"""
            exprs:
              - expr: {json.dumps(expr)}
                fields:
                  - name: a
                    path: body.a
        """)
    )


@pytest.mark.parametrize(
    ("expr", "value", "argo"),
    [
        # govaluate's == is reflect.DeepEqual: a string is never a number
        ("a == 5", "5", False),
        ("a == 5", 5.0, True),
        ("a == '5'", 5, False),
        ("a == '5'", "5", True),
        ("a != 'x'", None, True),
        ("a != 'x'", 1, True),
        ("a != 5", "5", True),
        ("a != 5", 5, False),
        # <, <=, >, >= compare two numbers or two strings, else fail with an error
        ("a > 5", "7", False),
        ("a > 5", 7, True),
        ("a > 5", True, False),
        ("a < 'b'", "a", True),
        ("a < 'b'", 1, False),
        # =~ and !~ need a string on the left
        ("a =~ '^2'", 200, False),
        ("a =~ '^2'", "200", True),
        ("a !~ '^2'", 300, False),
        ("a !~ '^2'", "300", True),
        # a field alone is true only when it is the boolean true
        ("a", "true", False),
        ("!a", 0, False),
        ("!a", False, True),
    ],
)
def test_expressions_keep_govaluates_types(expr: str, value: Any, argo: bool) -> None:
    assert passes(expr_filter(expr), {"a": value}) is argo


def test_an_operand_of_or_that_may_fail_with_an_error_before_another_holds_is_refused() -> None:
    # Given a string: govaluate fails `a > 5` with an error and rejects the event, without
    # reading `a == "x"`
    done = with_filters("""
            exprs:
              - expr: a > 5 || a == "x"
                fields:
                  - name: a
                    path: body.a
    """)
    assert "a > 5 is an error when a is not a number" in refusal(done)
    assert "without reading a == 'x'" in refusal(done)


@pytest.mark.parametrize(
    ("expr", "passing", "failing"),
    [
        # an error only where the later operand cannot hold either
        ("a > 5 || a < 2", [7, 1], [3, "x", "7"]),
        # an operand that never fails first: govaluate stops at it when it holds
        ("a == 'x' || a > 5", ["x", 7], ["y", "7"]),
        ("a =~ '^x' || a == 'y'", ["xa", "y"], [1, "z"]),
    ],
)
def test_or_translates_when_no_error_can_hide_an_operand_that_holds(
    expr: str, passing: list[Any], failing: list[Any]
) -> None:
    dep = expr_filter(expr)
    assert dep.filters_operator == "or"
    assert [passes(dep, {"a": v}) for v in passing] == [True] * len(passing)
    assert [passes(dep, {"a": v}) for v in failing] == [False] * len(failing)


def test_an_expression_over_one_field_may_use_or() -> None:
    dep = dependency(
        with_filters(
            """
            exprs:
              - expr: kind == "a" || kind == "b"
                fields:
                  - name: kind
                    path: body.kind
    """
        )
    )
    assert dep.filters_operator == "or" and passes(dep, {"kind": "b"})
    assert not passes(dep, {"kind": "c"})


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        # Argo's own example: an event without c fails it even when a == "b"
        ('a == "b" || c != 10', "need both"),
        # a regex against a value that is not a string fails the expression, there and then
        ('a =~ "start" || (b == true && c == 2)', "is an error when a is not a string"),
        ("c * 2 > 10", "uses '*'"),
        ('a > "2026-01-01"', "as a date"),
    ],
)
def test_an_expression_tripwire_cannot_say_exactly_refuses_the_trigger(
    expr: str, reason: str
) -> None:
    done = with_filters(f"""
            exprs:
              - expr: '{expr}'
                fields:
                  - name: a
                    path: body.a
                  - name: b
                    path: body.b
                  - name: c
                    path: body.c
    """)
    assert reason in refusal(done)


def test_context_filters_hold_for_every_event_of_their_dependency_or_for_none() -> None:
    same = with_dependencies("""
        - name: test-dep
          eventSourceName: webhook
          eventName: example
          filters:
            context:
              source: webhook
              subject: example
    """)
    assert dependency(same).filters == ()
    # Argo's filter-with-context example: its source is never 'custom-webhook'
    other = with_dependencies("""
        - name: test-dep
          eventSourceName: webhook
          eventName: example
          filters:
            context:
              source: custom-webhook
    """)
    assert "never 'custom-webhook'" in refusal(other)
    typed = with_dependencies("""
        - name: test-dep
          eventSourceName: webhook
          eventName: example
          filters:
            context:
              type: webhook
    """)
    assert "kind of the Argo event source" in refusal(typed)


def test_a_time_filter_keeps_events_between_start_and_stop_in_its_zone() -> None:
    dep = dependency(
        with_filters(
            """
            time:
              start: "22:00:00"
              stop: "06:00:00"
              timezone: "Europe/Paris"
    """
        )
    )
    assert passes(dep, {}, datetime(2026, 11, 23, 21, 30, tzinfo=UTC))  # 22:30 in Paris
    assert not passes(dep, {}, datetime(2026, 11, 23, 12, 0, tzinfo=UTC))


def test_a_time_filter_with_seconds_is_refused() -> None:
    done = with_filters(
        """
            time:
              start: "09:00:30"
              stop: "17:00:00"
    """
    )
    assert "has seconds" in refusal(done)


def test_kinds_joined_by_or_with_data_or_exprs_are_refused_since_argo_errors_reject() -> None:
    # Argo rejects an event its data filter cannot read (here: without body.urgent) even
    # when its time filter passes, which "or" over tripwire filters cannot say
    done = with_dependencies("""
        - name: d
          eventSourceName: w
          eventName: e
          filtersLogicalOperator: "or"
          filters:
            time:
              start: "09:00:00"
              stop: "10:00:00"
            data:
              - path: body.urgent
                type: bool
                value: ["true"]
    """)
    assert "Argo rejects an event on which its data filters meet an error" in refusal(done)
    assert "even when its time filter passes" in refusal(done)


def test_kinds_joined_by_or_translate_when_only_one_can_pass_or_none_can_fail() -> None:
    # A context filter that never holds neither passes nor fails with an error: data decides
    data = with_dependencies("""
        - name: d
          eventSourceName: w
          eventName: e
          filtersLogicalOperator: "or"
          filters:
            context:
              source: elsewhere
            data:
              - path: body.urgent
                type: bool
                value: ["true"]
    """)
    assert passes(dependency(data), {"urgent": True})
    assert not passes(dependency(data), {"urgent": False})
    # Time and context filters never fail with an error
    times = with_dependencies("""
        - name: d
          eventSourceName: w
          eventName: e
          filtersLogicalOperator: "or"
          filters:
            context:
              source: elsewhere
            time:
              start: "09:00:00"
              stop: "10:00:00"
    """)
    assert passes(dependency(times), {}, datetime(2026, 1, 1, 9, 5, tzinfo=UTC))
    assert not passes(dependency(times), {})


def test_kinds_joined_by_and_over_data_joined_by_or_are_refused_with_the_shape() -> None:
    done = with_filters(
        """
            time:
              start: "09:00:00"
              stop: "10:00:00"
            dataLogicalOperator: or
            data:
              - path: body.a
                type: string
                value: ["x"]
              - path: body.b
                type: string
                value: ["y"]
    """
    )
    assert "need both" in refusal(done) and "$.a regex 'x'" in refusal(done)


def test_a_lua_script_filter_is_refused() -> None:
    done = with_filters(
        """
            script: |-
              if event.a == "b" then return true else return false end
    """
    )
    assert "Lua script" in refusal(done)

"""Conditions in Argo Events syntax, parsed safely and checked at decoration."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triggers import DeclarationError, trigger
from triggers.conditions import parse_condition
from triggers.declarations import flow_spec

NAMES = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "true_for", "false_for"),
    [
        ("a && (b || c)", [{"a", "b"}, {"a", "c"}], [{"a"}, {"b", "c"}]),
        ("a || b && c", [{"a"}, {"b", "c"}], [{"b"}, {"c"}]),  # && binds tighter
        ("(a || b) && c", [{"a", "c"}, {"b", "c"}], [{"a", "b"}]),
        ("((a))", [{"a"}], [set()]),
    ],
)
def test_conditions_follow_boolean_precedence(
    text: str, true_for: list[set[str]], false_for: list[set[str]]
) -> None:
    condition = parse_condition(text, NAMES)
    assert all(condition.holds(s) for s in true_for)
    assert not any(condition.holds(s) for s in false_for)


@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6), st.data())
def test_a_condition_agrees_with_python_boolean_logic(
    names: list[str], data: st.DataObject
) -> None:
    ops = data.draw(
        st.lists(st.sampled_from(["&&", "||"]), min_size=len(names) - 1, max_size=len(names) - 1)
    )
    text = " ".join(itertools.chain.from_iterable(zip(names, [*ops, ""], strict=True))).strip()
    python = text.replace("&&", "and").replace("||", "or")
    condition = parse_condition(text, NAMES)
    for size in range(len(NAMES) + 1):
        for satisfied in itertools.combinations(NAMES, size):
            expected = eval(python, {}, {n: n in satisfied for n in NAMES})  # test oracle only
            assert condition.holds(set(satisfied)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a &&", "expected a dependency name"),
        ("(a || b", "expected ')'"),
        ("a & b", "unexpected '&'"),
        ("a b", "unexpected 'b'"),
        ("", "it is empty"),
        ("__import__('os')", "unexpected"),
    ],
)
def test_bad_syntax_is_refused_listing_the_known_names(text: str, message: str) -> None:
    with pytest.raises(DeclarationError) as caught:
        parse_condition(text, NAMES)
    assert message in str(caught.value) and "['a', 'b', 'c']" in str(caught.value)


def test_an_unknown_name_is_refused_at_decoration_listing_the_dependencies() -> None:
    with pytest.raises(DeclarationError, match=r"names 'refund'.*\['orders', 'payments'\]"):

        @trigger(events=["orders", "payments"], conditions="orders && refund")
        def flow() -> None: ...


def test_a_dep_name_renames_a_dependency_for_conditions() -> None:
    # Given an event renamed with dep, and a condition that uses the new name
    @trigger(
        events=[{"name": "orders.created", "dep": "orders"}, "payments"],
        conditions="orders || payments",
    )
    def flow() -> None: ...

    # Then the dependency matches the event's name and is called by its dep
    [spec] = flow_spec(flow).triggers
    assert [(d.name, d.dep) for d in spec.dependencies] == [
        ("orders.created", "orders"),
        ("payments", "payments"),
    ]
    # And the condition holds on the renamed dependency
    condition = spec.condition()
    assert condition.holds({"orders"}) and condition.holds({"payments"})
    assert not condition.holds(set())


def test_a_condition_naming_the_event_of_a_renamed_dependency_is_refused() -> None:
    with pytest.raises(DeclarationError, match=r"names 'orders.created'.*\['orders', 'payments'\]"):

        @trigger(
            events=[{"name": "orders.created", "dep": "orders"}, "payments"],
            conditions="orders.created || payments",
        )
        def flow() -> None: ...

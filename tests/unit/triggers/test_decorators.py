"""@trigger accepts every Metaflow form, validates at decoration, and leaves the function be."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from triggers import DeclarationError, trigger
from triggers.declarations import flow_spec, is_flow
from triggers.spec import DEFAULT_WINDOW, parse_duration


def deps(func: object, index: int = 0) -> list[tuple[str, dict[str, str] | None]]:
    spec = flow_spec(func)  # type: ignore[arg-type]
    return [(d.name, d.parameters) for d in spec.triggers[index].dependencies]


def test_a_decorated_flow_is_still_a_plain_function() -> None:
    @trigger(event="data_updated")
    def flow(rows: int = 0) -> int:
        return rows * 2

    assert flow(rows=21) == 42
    assert flow.__name__ == "flow" and is_flow(flow)


def test_an_event_name_means_default_matching() -> None:
    @trigger(event="data_updated")
    def flow(rows: int = 0) -> None: ...

    assert deps(flow) == [("data_updated", None)]


def test_an_explicit_mapping_is_kept_as_given() -> None:
    @trigger(event={"name": "e", "parameters": {"window": "how_many_days", "latest": "$.meta.ts"}})
    def flow(window: int = 3, latest: str = "") -> None: ...

    assert deps(flow) == [("e", {"window": "how_many_days", "latest": "$.meta.ts"})]


def test_metaflows_list_form_maps_names_and_pairs() -> None:
    @trigger(event={"name": "foo", "parameters": ["common_name", ("flow_param", "event_field")]})
    def flow(common_name: str = "", flow_param: str = "") -> None: ...

    assert deps(flow) == [("foo", {"common_name": "common_name", "flow_param": "event_field"})]


def test_several_events_share_a_window_that_defaults_to_one_hour() -> None:
    @trigger(events=["a", {"name": "b", "parameters": {"x": "y"}}])
    def flow(x: str = "") -> None: ...

    spec = flow_spec(flow)
    assert [d.name for d in spec.triggers[0].dependencies] == ["a", "b"]
    assert spec.triggers[0].within == DEFAULT_WINDOW == timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_within_takes_durations_and_timedeltas(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["soon", "-5m", "0s", "", "5 parsecs"])
def test_a_bad_window_is_refused_with_examples(bad: str) -> None:
    with pytest.raises(DeclarationError, match="90s"):

        @trigger(events=["a", "b"], within=bad)
        def flow() -> None: ...


def test_each_trigger_of_a_flow_gets_its_own_name() -> None:
    @trigger(event="a")
    @trigger(event="b", name="on_b")
    @trigger(event="c")
    def flow() -> None: ...

    names = [t.name for t in flow_spec(flow).triggers]
    assert sorted(names) == ["on_b", "trigger", "trigger_2"]
    assert len(set(names)) == 3


def test_a_duplicate_trigger_name_is_refused() -> None:
    with pytest.raises(DeclarationError, match="has a trigger named 'x' already"):

        @trigger(event="a", name="x")
        @trigger(event="b", name="x")
        def flow() -> None: ...


def test_mapping_an_unknown_parameter_suggests_the_close_one() -> None:
    with pytest.raises(
        DeclarationError, match=r"'windw' is not a parameter.*did you mean 'window'"
    ):

        @trigger(event={"name": "e", "parameters": {"windw": "days"}})
        def flow(window: int = 3) -> None: ...


def test_an_unknown_key_in_an_event_suggests_the_close_one() -> None:
    with pytest.raises(
        DeclarationError, match=r"unknown key 'parameter'.*did you mean 'parameters'"
    ):

        @trigger(event={"name": "e", "parameter": {}})
        def flow() -> None: ...


def test_a_bad_jsonpath_is_refused_when_declared() -> None:
    with pytest.raises(DeclarationError, match="JSONPath"):

        @trigger(event={"name": "e", "parameters": {"x": "$.[[["}})
        def flow(x: str = "") -> None: ...


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"event": "a", "events": ["b"]},
        {"events": []},
        {"event": 42},
        {"event": {"parameters": {}}},
    ],
)
def test_an_incomplete_or_contradictory_declaration_is_refused(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(DeclarationError):

        @trigger(**kwargs)
        def flow() -> None: ...


def test_bare_trigger_without_an_event_says_how_to_write_it() -> None:
    with pytest.raises(DeclarationError, match=r"@trigger\(event='data_updated'\)"):

        @trigger  # type: ignore[arg-type]
        def flow() -> None: ...


def test_the_same_event_twice_needs_distinct_dependency_names() -> None:
    with pytest.raises(DeclarationError, match="used twice"):

        @trigger(events=["a", "a"])
        def flow() -> None: ...


def test_a_flow_spec_records_where_the_run_process_finds_the_function(tmp_path: Path) -> None:
    @trigger(event="a")
    def flow() -> None: ...

    by_module = flow_spec(flow)
    assert by_module.entrypoint.module == __name__ and by_module.entrypoint.function == "flow"
    by_path = flow_spec(flow, path=tmp_path / "f.py")
    assert by_path.entrypoint.path == str((tmp_path / "f.py").resolve())


def test_an_undecorated_function_is_not_a_flow() -> None:
    def plain() -> None: ...

    assert not is_flow(plain)
    with pytest.raises(DeclarationError, match="decorate it with @trigger"):
        flow_spec(plain)

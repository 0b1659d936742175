"""A bad declaration says where it is: ``path:line: flow 'NAME': <what is wrong>``, the line
being its decorator's (triggers.locations), whatever the decorator and the mistake."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from triggers.declarations import flow_spec
from triggers.errors import DeclarationError
from triggers.loader import load_file

_FLOW = """\
from triggers import EventSource, schedule, trigger, trigger_on_finish

{decorators}
def {name}(day: str = "", rows: int = 0) -> None:
    pass
"""


def refusal(folder: Path, decorators: str, name: str) -> DeclarationError:
    """The error of loading a flow file that declares flow ``name`` with ``decorators``."""
    file = folder / "flows" / f"{name}.py"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(_FLOW.format(decorators=textwrap.dedent(decorators).strip(), name=name))
    with pytest.raises(DeclarationError) as caught:
        load_file(file)
    return caught.value


def line_of(decorators: str, marker: str) -> int:
    """The line in the flow file of the first decorator line holding ``marker``."""
    lines = textwrap.dedent(decorators).strip().splitlines()
    return 3 + next(n for n, text in enumerate(lines) if marker in text)


@pytest.mark.parametrize(
    ("decorators", "marker", "reason"),
    [
        (
            '@trigger(event={"name": "orders", "parameters": {"day": "$.[[["}})',
            "@trigger",
            "event 'orders': parameter 'day': invalid JSONPath '$.[[['",
        ),
        ('@trigger(events=["a", "b"], within="2x")', "@trigger", "within='2x' is not a duration"),
        (
            '@trigger(events=["a", "b"], conditions="a && c")',
            "@trigger",
            "conditions='a && c' names 'c', which is not a dependency",
        ),
        (
            '@trigger(event={"name": "orders", "filters": ["amount >= 100"]})',
            "@trigger",
            "event 'orders': filter 'amount >= 100' is not '<$.jsonpath> <op> <value>'",
        ),
        (
            '@trigger(event={"name": "orders", "parameters": {"dya": "date"}})',
            "@trigger",
            "'dya' is not a parameter of the flow (did you mean 'day'?)",
        ),
        (
            '@trigger(event="a", target={"url": "https://ci.example/run", "colour": "red"})',
            "@trigger",
            "target 'https://ci.example/run': colour: Extra inputs are not permitted",
        ),
        ("@trigger", "@trigger", "@trigger needs an event: write @trigger(event="),
        ('@schedule(cron="61 * * * *")', "@schedule", "is not a valid cron expression"),
        ("@schedule", "@schedule", "@schedule needs a clock: write @schedule(cron="),
        (
            '@schedule(cron="@daily", parameters={"dya": "$schedule.time"})',
            "@schedule",
            "'dya' is not a parameter of the flow (did you mean 'day'?)",
        ),
        (
            '@trigger_on_finish(flow="upstream", on=["RUNNING"])',
            "@trigger_on_finish",
            "on=['RUNNING'] must name final phases",
        ),
        ("@trigger_on_finish", "@trigger_on_finish", "@trigger_on_finish needs the upstream flow"),
        (
            """
            @trigger(event="a", name="x")
            @trigger(event="b", name="x")
            """,
            'name="x"',  # the upper one is applied second, and refused
            "the flow has a trigger named 'x' already; give this one another name=...",
        ),
        (
            """
            @schedule(cron="@daily")
            @trigger(
                event="a",
                within="soon",
            )
            """,
            "@trigger(",
            "within='soon' is not a duration",
        ),
    ],
)
def test_a_bad_declaration_names_its_file_decorator_line_and_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decorators: str, marker: str, reason: str
) -> None:
    # Given a flow file under the current folder
    monkeypatch.chdir(tmp_path)
    # When it is loaded
    refused = refusal(tmp_path, decorators, "load")
    # Then the error starts with where the decorator is, and says what is wrong once
    line = line_of(decorators, marker)
    assert str(refused).startswith(f"flows/load.py:{line}: flow 'load': ")
    assert reason in str(refused)
    assert str(refused).count("'load'") == 1  # the flow, named once
    assert (refused.path, refused.line) == ("flows/load.py", line)


def test_a_flow_file_outside_the_current_folder_is_named_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    refused = refusal(tmp_path / "elsewhere", '@trigger(event="a", within="2x")', "far")
    file = (tmp_path / "elsewhere" / "flows" / "far.py").resolve()
    assert str(refused).startswith(f"{file}:3: flow 'far': within='2x' is not a duration")


def test_an_event_source_in_a_flow_file_names_its_line_and_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = """
        ORDERS = EventSource(
            name="orders",
            url="redis://127.0.0.1:6379",
            event="orders_loaded",
        )

        @trigger(event="orders_loaded")
        """
    refused = refusal(tmp_path, source, "with_source")
    assert str(refused) == (
        "flows/with_source.py:3: source 'orders': a redis source needs 'stream' (where to read)"
    )


def test_a_valid_declaration_is_declared_as_before(tmp_path: Path) -> None:
    file = tmp_path / "fine.py"
    file.write_text(_FLOW.format(decorators='@trigger(event="a", within="2h")', name="fine"))
    [trigger] = flow_spec(load_file(file).fine).triggers
    assert trigger.within == timedelta(hours=2)

"""The CLI's own parsing: -p pairs and phase names."""

from __future__ import annotations

import pytest
import typer

from sensors.cli.base import parse_pairs
from sensors.cli.runs import parse_phase
from sensors.runs.phases import WorkflowPhase


def test_pair_values_are_json_when_they_parse_and_strings_otherwise() -> None:
    payload = parse_pairs(["rows=42", "ok=true", 'tags=["a"]', "name=sales", "empty=", "eq=a=b"])
    assert payload == {
        "rows": 42,
        "ok": True,
        "tags": ["a"],
        "name": "sales",
        "empty": "",
        "eq": "a=b",
    }


@pytest.mark.parametrize("bad", ["rows", "=5"])
def test_a_pair_without_a_key_is_refused_with_an_example(bad: str) -> None:
    with pytest.raises(typer.BadParameter, match="key=value"):
        parse_pairs([bad])


def test_phases_parse_case_insensitively_and_in_lists() -> None:
    assert parse_phase("failed,Aborted") == [WorkflowPhase.FAILED, WorkflowPhase.ABORTED]


def test_an_unknown_phase_lists_the_valid_ones() -> None:
    with pytest.raises(typer.BadParameter, match=r"unknown phase 'DONE'.*SUCCEEDED"):
        parse_phase("DONE")

"""`-p key=value` pairs: spaces around the `=` are not part of the key or the value
(issue 30 item 3)."""

from __future__ import annotations

import pytest
import typer

from sensors.cli.base import parse_pairs


@pytest.mark.parametrize("pair", ["k = v", "k= v", "k =v", " k=v"])
def test_spaces_around_the_equals_sign_are_dropped(pair: str) -> None:
    assert parse_pairs([pair]) == {"k": "v"}


def test_a_spaced_json_value_is_still_json() -> None:
    assert parse_pairs(["rows = 42", "tags = [1, 2]"]) == {"rows": 42, "tags": [1, 2]}


def test_spaces_inside_and_after_a_text_value_are_kept() -> None:
    assert parse_pairs(["title = a b "]) == {"title": "a b "}


def test_a_key_of_spaces_is_no_key() -> None:
    with pytest.raises(typer.BadParameter, match=r"' = 5' is not key=value; write it as"):
        parse_pairs([" = 5"])

"""Errors in one line, their type once."""

from __future__ import annotations

from triggers.error_text import exception_text, with_code


def test_an_exception_reads_type_then_text() -> None:
    assert exception_text(ValueError("bad value")) == "ValueError: bad value"
    assert exception_text(TimeoutError()) == "TimeoutError"


def test_a_text_that_names_its_type_already_does_not_repeat_it() -> None:
    assert exception_text(ValueError("ValueError: bad value")) == "ValueError: bad value"
    assert with_code("ValueError", "ValueError: bad value") == "ValueError: bad value"
    assert with_code("SpawnFailed", "no such file") == "SpawnFailed: no such file"

"""Go regexes (RE2, as Argo compiles them) as Python regexes that match the same texts."""

from __future__ import annotations

import re

import pytest

from sensors.interop.findings import Untranslatable
from sensors.interop.go_regex import matches_any, misses_any, python_regex


@pytest.mark.parametrize(
    ("pattern", "found_in", "not_found_in"),
    [
        ("hello", ["oh hello there"], ["HELLO"]),
        ("^EU-", ["EU-1"], ["XEU-1"]),
        (r"\d+$", ["abc 123"], ["123\n", "٣"]),  # Go: $ is the end, \d is ASCII
        (r"^\w+$", ["snake_case9"], ["café"]),  # Go's \w is ASCII
        (r"a\sb", ["a b", "a\tb"], ["a\vb", "a\u00a0b"]),  # Go's \s is [\t\n\f\r ]
        (r"\bcat\b", ["a cat.", "écat"], ["concat"]),  # Go: é is no word character
        ("(?i)abc|def", ["xABCx", "DeF"], ["ab"]),
        ("(?m)^b$", ["a\nb\nc"], ["ab"]),
        ("(?s)a.b", ["a\nb"], ["ab"]),
        ("a.b", ["a-b"], ["a\nb"]),
        ("a{,2}", ["a{,2}"], ["aa"]),  # literal in Go, a repeat in Python 3.11
        ("x{2,3}", ["xx"], ["x"]),
        (r"[[:alpha:]_-]+\z", ["a_b-c"], ["a_b1"]),
        (r"[^[:digit:]]", ["a"], ["123"]),
        (r"\Qa.b\E", ["a.b"], ["axb"]),
        (r"(?P<year>\d{4})-(\d\d)", ["2026-11"], ["26-11"]),
        (r"\x41\x{1F600}", ["A\U0001f600"], ["A"]),
        ("[]a]", ["]"], ["b"]),
    ],
)
def test_a_pattern_is_found_where_go_finds_it(
    pattern: str, found_in: list[str], not_found_in: list[str]
) -> None:
    translated = re.compile(python_regex(pattern))
    assert [bool(translated.search(t)) for t in found_in] == [True] * len(found_in)
    assert [bool(translated.search(t)) for t in not_found_in] == [False] * len(not_found_in)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"\pL", "Unicode classes"),
        (r"\p{Greek}", "Unicode classes"),
        (r"\123", "octal"),
        ("(?=a)b", "lookaround"),
        ("a(?i)b", "mid-pattern"),
        ("(?U)a+", "only i, m and s"),
        ("a**", "nothing to repeat"),
        ("x{1001}", "over 1000"),
        (r"[\D]", "inside a character class"),
        ("[[:^alpha:]]", "negated or unknown"),
        ("(a", "missing ')'"),
        ("a)", "unmatched ')'"),
    ],
)
def test_what_has_no_sure_equivalent_is_refused(pattern: str, why: str) -> None:
    with pytest.raises(Untranslatable, match=re.escape(why)):
        python_regex(pattern)


def test_any_of_several_patterns_is_one_regex() -> None:
    either = re.compile(matches_any(["^eu-", "^us-"]))
    assert either.search("us-east") and either.search("eu-west") and not either.search("ap-eu-")


def test_a_pattern_that_misses_is_one_regex_too_anchors_included() -> None:
    missing = re.compile(misses_any(["^release/", "hotfix"]))
    assert missing.search("main") and missing.search("release/1")  # hotfix is not found
    assert not re.compile(misses_any(["^release/"])).search("release/1")
    assert re.compile(misses_any(["^release/"])).search("x release/1")

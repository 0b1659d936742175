"""Manifests read as Kubernetes reads them: YAML into JSON values, or a refusal naming
where a value JSON cannot hold is."""

from __future__ import annotations

import pytest

from sensors.interop.kube_yaml import check_json, load, load_all
from triggers.errors import DeclarationError


def test_dates_and_clock_times_stay_the_text_they_are() -> None:
    # PyYAML's YAML 1.1 would read a date and a base-60 number (10:00:00 is 36,000)
    [document] = load_all("day: 2024-01-01\nat: 10:00:00\nn: 1_000\nx: 1.5\n", "m.yaml")
    assert document == {"day": "2024-01-01", "at": "10:00:00", "n": 1000, "x": 1.5}


def test_an_alias_used_twice_is_json_and_one_inside_its_anchor_is_refused() -> None:
    [shared] = load_all("a: &v {k: 1}\nb: *v\n", "m.yaml")
    check_json(shared, "m.yaml")
    [looped] = load_all("a: &v {k: [*v]}\n", "m.yaml")
    with pytest.raises(DeclarationError, match=r"m.yaml: a.k\[0\] holds itself"):
        check_json(looped, "m.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: .nan\n", "a is nan, which JSON cannot hold"),
        ("a: !!set {x}\n", "a holds a set"),
        ("a: !!omap [{x: 1}]\n", r"a\[0\] holds a tuple"),
        ('a: "\\udc80"\n', "a holds text that is not Unicode"),
    ],
)
def test_values_json_cannot_hold_are_refused_naming_where(text: str, message: str) -> None:
    [document] = load_all(text, "m.yaml")
    with pytest.raises(DeclarationError, match=message):
        check_json(document, "m.yaml")


def test_a_resource_written_inline_is_one_document() -> None:
    assert load("kind: Job\n", "inline") == {"kind": "Job"}
    with pytest.raises(DeclarationError, match="inline holds 2 YAML documents, not one"):
        load("a: 1\n---\nb: 2\n", "inline")
    with pytest.raises(DeclarationError, match="inline is not valid YAML at line 2"):
        load("a: [\n", "inline")

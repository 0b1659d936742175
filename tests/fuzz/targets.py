"""Coverage-guided fuzz targets (atheris) for what reads untrusted text.

    python -m tests.fuzz.targets decoder -atheris_runs=100000
    python -m tests.fuzz.targets conditions -atheris_runs=100000
    python -m tests.fuzz.targets jsonpath -atheris_runs=100000

Each target feeds the fuzzer's bytes to one reader and lets only that reader's
documented errors pass; anything else is a crash, which libFuzzer reports with the
input that caused it (and exits non-zero). tests/fuzz/test_fuzz.py runs each one.

- decoder: a Kafka record's value and headers -> ``triggers.envelope.decode``; only
  ``EventDecodeError``. A decoded event must hold a JSON object.
- conditions: a conditions text -> ``parse_condition``; only ``DeclarationError``. A
  parsed condition must answer for any set of satisfied dependencies.
- jsonpath: a JSONPath, a filter and a payload -> ``compile_jsonpath`` and
  ``parse_filter`` (only ``DeclarationError``), then what a worker does with an
  event: filter it, key it, map it to parameters. That must never raise, whatever
  the payload holds.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import atheris

with atheris.instrument_imports(include=["triggers", "sensors"]):
    from sensors.core.filters import correlation_key, rejection
    from sensors.core.mapping import extract_parameters
    from triggers.conditions import parse_condition
    from triggers.envelope import Envelope, decode
    from triggers.errors import DeclarationError, EventDecodeError
    from triggers.filters import parse_filter
    from triggers.jsonpath import compile_jsonpath
    from triggers.spec import EventDependency

_HEADERS = [
    "ce_type",
    "ce_id",
    "ce_source",
    "ce_time",
    "ce_specversion",
    "content-type",
    "CE_TYPE",
    "Ce_Id",
    "ce_subject",
]
_CONTENT_TYPES = [b"application/json", b"application/cloudevents+json", b"text/plain", b""]
_CONDITION_TOKENS = ["a", "b", "c", "a.b", "x-y", "&&", "||", "(", ")", " ", "!", "&", "|"]
_PATH_TOKENS = [
    "$",
    ".",
    "..",
    "a",
    "b",
    "*",
    "[",
    "]",
    "0",
    "-1",
    ":",
    "?",
    "(",
    ")",
    "@",
    "==",
    ">",
    "<",
    "'x'",
    '"y"',
    ",",
    "`len`",
    "&",
    "|",
    "~",
    "=~",
    "1.5",
    " ",
]


def decoder(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    headers = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        key = fdp.PickValueInList(_HEADERS) if fdp.ConsumeBool() else fdp.ConsumeUnicode(8)
        if key == "content-type" and fdp.ConsumeBool():
            value = fdp.PickValueInList(_CONTENT_TYPES)
        elif key == "ce_time" and fdp.ConsumeBool():
            value = datetime.now(UTC).isoformat().encode()[: fdp.ConsumeIntInRange(0, 40)]
        elif fdp.ConsumeIntInRange(0, 7) == 0:
            value = None  # a header with no value: Kafka allows it
        else:
            value = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
        headers.append((key, value))
    value = fdp.ConsumeBytes(fdp.remaining_bytes()) if fdp.ConsumeBool() else None
    try:
        envelope = decode(value, tuple(headers))
    except EventDecodeError:
        return
    assert isinstance(envelope.payload, dict)
    assert isinstance(envelope.name, str) and isinstance(envelope.id, str)


def conditions(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    parts = []
    for _ in range(fdp.ConsumeIntInRange(0, 200)):
        if fdp.ConsumeIntInRange(0, 9) == 0:
            parts.append(fdp.ConsumeUnicode(4))
        else:
            parts.append(fdp.PickValueInList(_CONDITION_TOKENS))
    text = "".join(parts)
    if fdp.ConsumeIntInRange(0, 99) == 0:
        depth = fdp.ConsumeIntInRange(1, 5000)
        text = "(" * depth + "a" + ")" * depth  # deep nesting must not blow the stack
    known = ["a", "b", "c", "a.b", "x-y"]
    try:
        condition = parse_condition(text, known)
    except DeclarationError:
        return
    satisfied = {name for name in known if fdp.ConsumeBool()}
    assert condition.holds(satisfied) in (True, False)


def jsonpath(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    path = "".join(
        fdp.PickValueInList(_PATH_TOKENS) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeUnicode(3)
        for _ in range(fdp.ConsumeIntInRange(0, 24))
    )
    try:
        compile_jsonpath(path)
    except DeclarationError:
        path = "$.a"
    op = fdp.PickValueInList(["==", "!=", ">", ">=", "<", "<=", "in", "exists", "=~", "~"])
    text = f"{path} {op} {fdp.ConsumeUnicode(8)}"
    try:
        dependency = EventDependency(
            name="e",
            dep="e",
            filters=(parse_filter(text, where="f"),),
            parameters={"p": path, "q": "a"},
        )
    except (DeclarationError, ValueError):
        dependency = EventDependency(name="e", dep="e", parameters={"p": path, "q": "a"})
    envelope = Envelope(name="e", id="1", source="", time=None, payload=_payload(fdp))
    rejection(dependency, envelope, datetime.now(UTC))
    correlation_key(path, envelope)
    extract_parameters(dependency, envelope, ["p", "q"])


def _payload(fdp: atheris.FuzzedDataProvider) -> dict[str, Any]:
    def value(depth: int) -> Any:
        kind = fdp.ConsumeIntInRange(0, 8 if depth < 4 else 5)
        if kind == 0:
            return None
        if kind == 1:
            return fdp.ConsumeBool()
        if kind == 2:
            return fdp.ConsumeInt(8)
        if kind == 3:
            return fdp.ConsumeRegularFloat()
        if kind in (4, 5):
            return fdp.ConsumeUnicode(6)
        if kind in (6, 7):
            return {
                fdp.PickValueInList(["a", "b", "x"]): value(depth + 1)
                for _ in range(fdp.ConsumeIntInRange(0, 3))
            }
        return [value(depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]

    payload = value(3)
    payload = payload if isinstance(payload, dict) else {"a": payload}
    return json.loads(json.dumps(payload))  # what a decoded event can hold


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decoder": decoder,
    "conditions": conditions,
    "jsonpath": jsonpath,
}


def main() -> None:
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

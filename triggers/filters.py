"""Dependency filters as declared: a JSONPath and a comparator, or a time of day.

Declared on a dependency, each filter is validated when the decorator runs:

    {"name": "orders", "filters": [
        {"path": "$.amount", "op": ">=", "value": 100},
        "$.region in [\"eu\", \"us\"]",          # the compact string form
        {"between": "09:00-17:00", "tz": "Europe/Paris"},   # on the event's time
    ], "filters_operator": "and"}

Comparators: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``regex`` and
``exists``. The engine evaluates them (:mod:`sensors.core.filters`). A comparison reads a
numeric string as its number and an ISO date as a point in time; with ``"strict": True``
(dict form only) it reads each JSON value as its own type instead.
"""

from __future__ import annotations

import json
import re
from datetime import time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from triggers.errors import DeclarationError
from triggers.jsonpath import compile_jsonpath

__all__ = ["OPERATORS", "Filter", "TimeOfDay", "parse_filter"]

Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "regex", "exists"]
OPERATORS: tuple[str, ...] = ("==", "!=", "<", "<=", ">", ">=", "in", "regex", "exists")
_COMPACT = re.compile(r"^\s*(\$\S*)\s+(==|!=|<=|>=|<|>|in|regex|exists)\s*(.*?)\s*$")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class Filter(BaseModel):
    """Keep an event only when the value at ``path`` compares true with ``value``."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    path: str = Field(description="JSONPath into the payload; any match may satisfy the filter.")
    op: Operator
    value: Any = Field(
        None,
        description=(
            "Right-hand side. Numbers compare as numbers, ISO dates as dates, `in` takes a "
            "list, `regex` a pattern (searched), `exists` true or false."
        ),
    )
    strict: bool = Field(
        False,
        # Left out of the JSON when off, so the specs (and digests) of filters declared
        # before it existed do not change.
        exclude_if=lambda strict: not strict,
        description=(
            "Compare without converting: a value compares only with a value of its own JSON "
            "type. `==` and `in` need the same type, `!=` passes a value of another type, "
            "`<`, `<=`, `>`, `>=` need two numbers or two strings (strings by code point, "
            "never as dates), `regex` matches strings only."
        ),
    )


class TimeOfDay(BaseModel):
    """Keep an event only when its time falls between two clock times in a time zone."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    start: time
    stop: time = Field(description="Exclusive. A stop before the start spans midnight.")
    tz: str = "UTC"


def parse_filter(item: Any, *, where: str) -> Filter | TimeOfDay:
    """Validate one declared filter.

    Raises:
        DeclarationError: the filter is malformed; the message shows the accepted forms.
    """
    if isinstance(item, str):
        match = _COMPACT.match(item)
        if not match:
            raise DeclarationError(
                f"{where}: filter {item!r} is not '<$.jsonpath> <op> <value>', e.g. "
                f"'$.amount >= 100'; ops: {', '.join(OPERATORS)}."
            )
        path, op, raw = match.groups()
        item = {"path": path, "op": op, "value": _value(raw) if raw else None}
    if not isinstance(item, dict):
        raise DeclarationError(
            f"{where}: a filter is a dict like {{'path': '$.amount', 'op': '>=', 'value': 100}}, "
            f"a string like '$.amount >= 100', or {{'between': '09:00-17:00', 'tz': 'UTC'}}; "
            f"not {type(item).__name__}."
        )
    if "between" in item:
        return _time_of_day(item, where)
    unknown = set(item) - {"path", "op", "value", "strict"}
    if unknown or "path" not in item or "op" not in item:
        raise DeclarationError(
            f"{where}: filter {item!r} needs 'path' and 'op' (and usually 'value', perhaps "
            "'strict'), nothing else."
        )
    if item["op"] not in OPERATORS:
        raise DeclarationError(
            f"{where}: unknown filter op {item['op']!r}; use one of {', '.join(OPERATORS)}."
        )
    if not isinstance(item["path"], str) or not item["path"].startswith("$"):
        raise DeclarationError(f"{where}: filter path {item['path']!r} must be a JSONPath ($...).")
    compile_jsonpath(item["path"])
    op, value, strict = item["op"], item.get("value"), item.get("strict", False)
    if not isinstance(strict, bool):
        raise DeclarationError(f"{where}: 'strict' takes true or false, not {strict!r}.")
    if strict and op == "exists":
        raise DeclarationError(
            f"{where}: 'strict' applies to comparisons; 'exists' compares nothing, so drop it."
        )
    if op == "exists":
        value = True if value is None else value
        if not isinstance(value, bool):
            raise DeclarationError(f"{where}: 'exists' takes true or false, not {value!r}.")
    elif op == "in" and not isinstance(value, list | tuple):
        raise DeclarationError(f"{where}: 'in' takes a list of values, e.g. ['eu', 'us'].")
    elif op == "regex":
        try:
            re.compile(str(value))
        except re.error as exc:
            raise DeclarationError(f"{where}: invalid regex {value!r}: {exc}.") from None
    elif (op in ("<", "<=", ">", ">=") and not isinstance(value, int | float | str)) or (
        isinstance(value, bool) and op in ("<", "<=", ">", ">=")
    ):
        raise DeclarationError(
            f"{where}: {op!r} compares numbers, strings or ISO dates, not {value!r}."
        )
    if op == "in":
        value = list(value or ())
    return Filter(path=item["path"], op=op, value=value, strict=strict)


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _time_of_day(item: dict[str, Any], where: str) -> TimeOfDay:
    unknown = set(item) - {"between", "tz"}
    match = _CLOCK.match(str(item["between"]))
    if unknown or not match:
        raise DeclarationError(
            f"{where}: a time-of-day filter is {{'between': 'HH:MM-HH:MM', 'tz': 'Area/City'}}, "
            f"not {item!r}."
        )
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    tz = str(item.get("tz", "UTC"))
    try:
        ZoneInfo(tz)
        start, stop = time(h1, m1), time(h2, m2)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DeclarationError(f"{where}: bad time-of-day filter {item!r}: {exc}.") from None
    if start == stop:
        raise DeclarationError(f"{where}: 'between' needs two different times, not {start}.")
    return TimeOfDay(start=start, stop=stop, tz=tz)

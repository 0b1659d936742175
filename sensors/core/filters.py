"""Evaluating dependency filters and correlation keys on an event (pure).

Comparisons are typed the way a user reads them: a number compares with a
number (a numeric string counts), ISO dates and datetimes compare as points in
time, booleans only equal booleans, and anything else compares as a string.
A strict filter converts nothing: each JSON value is of its own type, and values of
different types are unequal and unordered (how Argo Events' expressions compare).
A JSONPath with several matches passes when any match passes.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from triggers.envelope import Envelope
from triggers.error_text import shown_value
from triggers.filters import Filter, TimeOfDay
from triggers.jsonpath import values_at
from triggers.spec import EventDependency

__all__ = ["correlation_key", "failed_filters", "rejection"]

_MISSING = object()


def rejection(dep: EventDependency, envelope: Envelope, event_time: datetime) -> str | None:
    """None when the event passes ``dep``'s filters, else the reason it does not."""
    if not dep.filters:
        return None
    return failed_filters(dep.filters, dep.filters_operator, envelope.payload, event_time)


def failed_filters(
    filters: Sequence[Filter | TimeOfDay], operator: str, payload: Any, event_time: datetime
) -> str | None:
    """None when ``payload`` at ``event_time`` passes ``filters`` (joined by ``operator``,
    ``and`` or ``or``), else the reason it does not."""
    reasons: list[str] = []
    for item in filters:
        if isinstance(item, TimeOfDay):
            reason = _outside_hours(item, event_time)
        else:
            reason = _fails(item, payload)
        if reason is None and operator == "or":
            return None
        if reason is not None:
            if operator == "and":
                return reason
            reasons.append(reason)
    return "; ".join(reasons) if reasons else None


def correlation_key(path: str, envelope: Envelope) -> str | None:
    """The event's correlation key (its value at ``path``, as canonical JSON), or None."""
    matches = values_at(path, envelope.payload)
    if not matches:
        return None
    return json.dumps(matches[0], sort_keys=True, separators=(",", ":"), default=str)


def _fails(item: Filter, payload: dict[str, Any]) -> str | None:
    values = values_at(item.path, payload)
    if item.op == "exists":
        if bool(values) == item.value:
            return None
        return f"{item.path} is missing" if item.value else f"{item.path} exists"
    if not values:
        return f"{item.path} is missing"
    # A loop, not any(...) over a generator: this runs per filter per event.
    holds, op, expected = _holds_strictly if item.strict else _holds, item.op, item.value
    for actual in values:
        if holds(actual, op, expected):
            return None
    shown = values[0] if len(values) == 1 else values
    strictly = " (strict)" if item.strict else ""
    return (
        f"{item.path} = {shown_value(shown)} is not {item.op} {shown_value(item.value)}{strictly}"
    )


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _holds(actual: Any, op: str, expected: Any) -> bool:
    if op == "==":
        return _equal(actual, expected)
    if op == "!=":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, option) for option in expected)
    if op == "regex":
        return (
            isinstance(actual, str | int | float)
            and not isinstance(actual, bool)
            and _regex(str(expected)).search(str(actual)) is not None
        )
    pair = _orderable(actual, expected)
    return pair is not None and bool(_ORDER[op](*pair))


def _holds_strictly(actual: Any, op: str, expected: Any) -> bool:
    if op == "==":
        return _same(actual, expected)
    if op == "!=":
        return not _same(actual, expected)
    if op == "in":
        return any(_same(actual, option) for option in expected)
    if op == "regex":
        return isinstance(actual, str) and _regex(str(expected)).search(actual) is not None
    kind = _kind(actual)
    if kind != _kind(expected) or kind not in ("number", "string"):
        return False  # strict: two numbers or two strings, nothing converted
    if kind == "number":
        return bool(_ORDER[op](_float(actual), _float(expected)))
    return bool(_ORDER[op](actual, expected))


def _kind(value: Any) -> str:
    """The JSON type of a payload value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return "null" if value is None else type(value).__name__


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: same type, numbers by value, containers item by item."""
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == "number":
        return _float(a) == _float(b)
    if kind == "object":
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if kind == "array":
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    pair = _orderable(actual, expected)
    if pair is not None:
        return bool(pair[0] == pair[1])
    return bool(actual == expected)


def _orderable(actual: Any, expected: Any) -> tuple[Any, Any] | None:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return None
    if isinstance(expected, int | float):
        number = _number(actual)
        return None if number is None else (number, expected)
    if isinstance(expected, str) and isinstance(actual, str):
        left, right = _instant(actual), _instant(expected)
        if left is not None and right is not None:
            return left, right
        return actual, expected
    if isinstance(expected, str) and isinstance(actual, int | float):
        number = _number(expected)
        return None if number is None else (actual, number)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _float(number: float) -> float:
    """A JSON number as a float; an integer beyond the float range is infinite, as JSON
    parsers read it (payloads keep big integers exact, and ``float()`` refuses them)."""
    try:
        return float(number)
    except OverflowError:
        return float("inf") if number > 0 else float("-inf")


@lru_cache(maxsize=4096)
def _instant(text: str) -> datetime | None:
    if len(text) < 10 or not text[:4].isdigit() or text[4] != "-":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        moment = datetime(day.year, day.month, day.day)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _outside_hours(item: TimeOfDay, event_time: datetime) -> str | None:
    local = event_time.astimezone(_zone(item.tz)).time()
    if item.start < item.stop:
        inside = item.start <= local < item.stop
    else:  # spans midnight, e.g. 22:00-06:00
        inside = local >= item.start or local < item.stop
    if inside:
        return None
    return (
        f"event time {local.strftime('%H:%M')} {item.tz} is outside "
        f"{item.start.strftime('%H:%M')}-{item.stop.strftime('%H:%M')}"
    )

"""An Argo Events dependency's ``filters`` as the filters of one tripwire dependency.

Argo's semantics (``pkg/sensors/dependencies/filter.go``), which the translation keeps:

- ``filtersLogicalOperator`` joins the kinds present (exprs, data, context, time); with
  ``or`` a kind that is absent counts for nothing, with ``and`` for true. An error in a
  kind (a path the event lacks, a value an expression cannot compare) rejects the event
  whatever the operator, so with ``or`` exprs or data translate only as the one kind
  present (a context filter that never holds does not count).
- A data filter reads ``path`` as its ``type``. Its ``value`` list is a choice: any value
  that compares true passes. ``string`` values are Go regexes, searched (``=``), or
  required *not* to be found (``!=``); ``number`` values compare as floats with the
  ``comparator``; ``bool`` values are Go booleans (``t``, ``TRUE``, ``0``...). Values are
  read in order up to the first that does not parse, where Argo stops with an error.
  gjson reads an event value of any type as the filter's type (as text, as a float, as a
  boolean), where tripwire's filters compare a value of the type it has: each typed data
  filter reports how the two differ.
- An expr filter is false when one of its fields is missing; its expression is read by
  :mod:`sensors.interop.govaluate`.
- A missing path fails a data filter; ``dataLogicalOperator`` and ``exprLogicalOperator``
  join each kind's list.
- The context of an event from Argo's event sources is fixed per dependency (subject is
  the eventName, source the eventSourceName, datacontenttype ``application/json``), so a
  context filter holds for every event of the dependency, or for none.
- A time filter keeps events whose time of day is in ``[start, stop)``, across midnight
  when stop is earlier, in ``timezone`` (UTC by default).
"""

from __future__ import annotations

import operator as compare
import re
from collections.abc import Callable
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sensors.interop.findings import Finding, Untranslatable
from sensors.interop.formula import ALWAYS, Atom, Formula, Never, all_of, any_of, flatten
from sensors.interop.gjson import indexes, jsonpath_of
from sensors.interop.go_regex import matches_any, misses_any
from sensors.interop.govaluate import expression_formula
from triggers.errors import DeclarationError

__all__ = ["FILTER_KEYS", "Filters", "dependency_filters", "operator_of"]

FILTER_KEYS = (
    "time",
    "context",
    "data",
    "exprs",
    "dataLogicalOperator",
    "exprLogicalOperator",
    "script",
)
_COMPARATORS = ("", "=", "!=", "<", "<=", ">", ">=")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_GO_SPECIAL = re.compile(r"[+-]?(?:inf(?:inity)?|nan|0[xX].*)", re.IGNORECASE)
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_CLOCK = re.compile(r"(\d{1,2}):(\d\d):(\d\d)(\.\d+)?")
_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "": compare.eq,
    "=": compare.eq,
    "!=": compare.ne,
    "<": compare.lt,
    "<=": compare.le,
    ">": compare.gt,
    ">=": compare.ge,
}
# How gjson reads an event value as the filter's type, and how tripwire's filters differ.
_AS_STRING = (
    "Argo matches the text gjson gives any value: an integer as written, another number in "
    "plain decimals (1e2 and 100.0 are 100), true or false, '' for null, an object's or "
    "array's JSON; here strings and numbers are matched, a number as Python writes it "
    "(100.0, 1e-05), and other values fail"
)
_AS_TRUE = (
    "Argo also passes a string it reads as true ('true', 't' or '1', in any case) and a "
    "number other than 0; here only true passes"
)
_AS_FALSE = (
    "Argo also passes null, 0, an object or array, and a string it does not read as true "
    "('false', 'no', ''); here only false passes"
)
_AS_NUMBER = (
    "a string is read as a number by Go in Argo and by Python here, which also reads ' 5' "
    "and '1_0' (as 5 and 10; Go as 0)"
)

Filters = tuple[list[dict[str, Any]], Literal["and", "or"], list[Finding]]


def operator_of(raw: object, where: str) -> Literal["and", "or"]:
    """A logical operator as Argo accepts it: '', 'and' or 'or' (lower case)."""
    if raw in (None, "", "and"):
        return "and"
    if raw == "or":
        return "or"
    raise DeclarationError(
        f"{where} is {raw!r}; Argo accepts 'and', 'or' or nothing (lower case), so it would "
        "refuse this Sensor."
    )


def dependency_filters(dependency: dict[str, Any], *, root: str, where: str) -> Filters:
    """The filters, their operator, and the differences to know, of one dependency.

    Raises:
        Untranslatable: a filter has no exact tripwire equivalent, or lets no event through.
        DeclarationError: a filter Argo itself refuses (the message names it).
    """
    raw = dependency.get("filters")
    if raw is None:
        return [], "and", []
    if not isinstance(raw, dict):
        raise DeclarationError(f"{where}.filters must be a mapping of filter kinds.")
    operator = operator_of(
        dependency.get("filtersLogicalOperator"), f"{where}.filtersLogicalOperator"
    )
    reader = _Reader(dependency, root, f"{where}.filters")
    for key in sorted(set(raw) - set(FILTER_KEYS)):
        reader.findings.append(
            Finding(
                "dropped",
                f"{where}.filters.{key}",
                "not a filter kind Argo knows; Kubernetes drops it, and so does this",
            )
        )
    if raw.get("script"):
        raise Untranslatable("its Lua script filter has no tripwire equivalent")
    kinds: dict[str, Formula] = {}
    if raw.get("exprs") is not None:
        kinds["exprs"] = reader.exprs(raw["exprs"], raw.get("exprLogicalOperator"))
    if raw.get("data") is not None:
        kinds["data"] = reader.data(raw["data"], raw.get("dataLogicalOperator"))
    if raw.get("context") is not None:
        kinds["context"] = reader.context(raw["context"])
    if raw.get("time") is not None:
        kinds["time"] = reader.time(raw["time"])
    parts = list(kinds.values())
    if operator == "or":
        _without_errors(kinds)
    filters, joined = flatten(any_of(parts) if operator == "or" else all_of(parts))
    return filters, joined, reader.findings


def _without_errors(kinds: dict[str, Formula]) -> None:
    """Refuse kinds joined by ``or`` whose errors would matter: Argo rejects an event on
    which exprs or data filters meet an error even when another kind passes it.

    Raises:
        Untranslatable: exprs or data filters are joined by ``or`` with another kind.
    """
    # A context filter neither fails with an error nor, when it never holds, passes.
    live = [
        k for k, formula in kinds.items() if not (k == "context" and isinstance(formula, Never))
    ]
    failing = [k for k in live if k in ("exprs", "data")]
    if len(live) > 1 and failing:
        other = next(k for k in live if k != failing[0])
        raise Untranslatable(
            f"with filtersLogicalOperator or, Argo rejects an event on which its {failing[0]} "
            "filters meet an error (a path the event lacks, a value they cannot compare) even "
            f"when its {other} filter passes; tripwire's filters have no errors, so they "
            "cannot say that"
        )


class _Reader:
    def __init__(self, dependency: dict[str, Any], root: str, where: str) -> None:
        self.dependency, self.root, self.where = dependency, root, where
        self.findings: list[Finding] = []

    def _path(self, path: object, where: str) -> str:
        if not isinstance(path, str) or not path:
            raise DeclarationError(f"{where}.path must be a non-empty string; Argo refuses it.")
        translated = jsonpath_of(path, self.root)
        if indexes(path):
            self.findings.append(
                Finding(
                    "differs",
                    where,
                    f"path {path!r} reads a number as an array index "
                    f"({translated}); gjson also reads an object key of that name",
                )
            )
        return translated

    def _list(self, raw: object, where: str) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not all(isinstance(i, dict) for i in raw):
            raise DeclarationError(f"{where} must be a list of mappings.")
        return raw

    def exprs(self, raw: object, operator: object) -> Formula:
        joined = operator_of(operator, f"{self.where}.exprLogicalOperator")
        parts: list[Formula] = []
        for n, item in enumerate(self._list(raw, f"{self.where}.exprs")):
            here = f"{self.where}.exprs[{n}]"
            fields = item.get("fields")
            if not item.get("expr") or not isinstance(fields, list) or not fields:
                raise DeclarationError(f"{here} needs expr and fields; Argo refuses it.")
            paths: dict[str, str] = {}
            for field in self._list(fields, f"{here}.fields"):
                if not field.get("name") or not field.get("path"):
                    raise DeclarationError(f"{here}.fields need a name and a path each.")
                paths[str(field["name"])] = self._path(field["path"], f"{here}.fields")
            every = [Atom({"path": p, "op": "exists", "value": True}, p) for p in paths.values()]
            parts.append(all_of([*every, expression_formula(str(item["expr"]), paths)]))
        return any_of(parts) if joined == "or" else all_of(parts)

    def data(self, raw: object, operator: object) -> Formula:
        joined = operator_of(operator, f"{self.where}.dataLogicalOperator")
        items = self._list(raw, f"{self.where}.data")
        if not items:
            return ALWAYS  # Argo passes an empty data list, whatever the operator
        parts = [self._datum(item, f"{self.where}.data[{n}]") for n, item in enumerate(items)]
        return any_of(parts) if joined == "or" else all_of(parts)

    def _datum(self, item: dict[str, Any], where: str) -> Formula:
        values, kind = item.get("value"), item.get("type")
        comparator = item.get("comparator") or ""
        if not kind or not isinstance(values, list) or not values:
            raise DeclarationError(f"{where} needs path, type and value; Argo refuses it.")
        if not all(isinstance(v, str) and v for v in values):
            raise DeclarationError(
                f"{where}.value entries must be non-empty strings; quote them "
                '(value: ["100"]), or Kubernetes refuses the Sensor.'
            )
        if comparator not in _COMPARATORS:
            raise DeclarationError(f"{where}.comparator {comparator!r} is not one Argo knows.")
        if item.get("template"):
            raise Untranslatable(f"{where}.template (a Go template) has no tripwire equivalent")
        path = self._path(item.get("path"), where)
        if kind == "string":
            formula, differs = self._string(path, values, comparator, where), _AS_STRING
        elif kind == "number":
            formula, differs = self._number(path, values, comparator, where)
        elif kind == "bool":
            formula = self._bool(path, values, where)
            item = formula.item if isinstance(formula, Atom) else {}
            # With both values it is an ``exists``, which passes every value, as Argo does.
            wanted = item.get("value") if item.get("op") == "==" else None
            differs = _AS_TRUE if wanted is True else _AS_FALSE if wanted is False else ""
        else:
            return Never(f"{where}.type {kind!r} is not bool, number or string")
        if differs and not isinstance(formula, Never):
            self.findings.append(Finding("differs", where, differs))
        return formula

    @staticmethod
    def _string(path: str, values: list[str], comparator: str, where: str) -> Formula:
        if comparator in ("", "="):
            return Atom({"path": path, "op": "regex", "value": matches_any(values)}, path)
        if comparator == "!=":
            return Atom({"path": path, "op": "regex", "value": misses_any(values)}, path)
        return Never(f"{where}: a string filter compares with = or != only, not {comparator}")

    @staticmethod
    def _number(path: str, values: list[str], comparator: str, where: str) -> tuple[Formula, str]:
        """The filter, and how it differs from Argo's reading of values that are not
        numbers (none when it passes every value, as Argo's does)."""
        numbers: list[float] = []
        for value in values:
            if _GO_SPECIAL.fullmatch(value.strip()):
                raise Untranslatable(
                    f"{where}: value {value!r} (hexadecimal, infinite or NaN) is not "
                    "translated; write it as a decimal number"
                )
            number = float(value) if _DECIMAL.fullmatch(value) else float("inf")
            if number in (float("inf"), float("-inf")):
                break  # Go's ParseFloat fails here, and Argo stops with an error
            numbers.append(number)
        if not numbers:
            return Never(f"{where}: {values[0]!r} is not a number Go can parse"), ""
        if comparator == "!=" and len(set(numbers)) > 1:
            # A number differs from one of two different values: every event passes.
            return Atom({"path": path, "op": "exists", "value": True}, path), ""
        item: dict[str, Any]
        if comparator in ("", "=") and len(set(numbers)) > 1:
            item = {"path": path, "op": "in", "value": list(dict.fromkeys(numbers))}
        elif comparator in ("", "=", "!="):
            item = {"path": path, "op": "!=" if comparator == "!=" else "==", "value": numbers[0]}
        else:
            bound = min(numbers) if comparator in (">", ">=") else max(numbers)
            item = {"path": path, "op": comparator, "value": bound}
        return Atom(item, path), _number_differs(comparator, numbers)

    @staticmethod
    def _bool(path: str, values: list[str], where: str) -> Formula:
        wanted: set[bool] = set()
        for value in values:
            if value not in _GO_TRUE + _GO_FALSE:
                break  # Go's ParseBool fails here, and Argo stops with an error
            wanted.add(value in _GO_TRUE)
        if not wanted:
            return Never(f"{where}: {values[0]!r} is not a boolean Go can parse")
        if len(wanted) == 2:
            return Atom({"path": path, "op": "exists", "value": True}, path)
        return Atom({"path": path, "op": "==", "value": wanted.pop()}, path)

    def context(self, raw: object) -> Formula:
        where = f"{self.where}.context"
        if not isinstance(raw, dict):
            raise DeclarationError(f"{where} must be a mapping.")
        fixed = {
            "subject": self.dependency.get("eventName"),
            "source": self.dependency.get("eventSourceName"),
            "datacontenttype": "application/json",
        }
        if not any(raw.get(k) for k in (*fixed, "type")):
            raise DeclarationError(f"{where} names no field; Argo refuses it.")
        if raw.get("type"):
            raise Untranslatable(
                f"{where}.type is the kind of the Argo event source (webhook, kafka...), "
                "which tripwire events do not carry"
            )
        for key, actual in fixed.items():
            if raw.get(key) and raw[key] != actual:
                return Never(f"{where}.{key} is never {raw[key]!r}")
        return ALWAYS

    def time(self, raw: object) -> Formula:
        where = f"{self.where}.time"
        if not isinstance(raw, dict):
            raise DeclarationError(f"{where} must be a mapping with start and stop.")
        start, stop = (
            _clock(raw.get("start"), f"{where}.start"),
            _clock(raw.get("stop"), f"{where}.stop"),
        )
        if start == stop:
            raise DeclarationError(f"{where}: start equals stop; Argo refuses it.")
        zone = str(raw.get("timezone") or "UTC")
        if zone == "Local":
            raise Untranslatable(f"{where}.timezone 'Local' is the Argo pod's own time zone")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise DeclarationError(f"{where}.timezone {zone!r} is not an IANA zone.") from None
        if zone not in ("UTC", "Etc/UTC"):
            self.findings.append(
                Finding(
                    "differs",
                    where,
                    "on the days clocks change, an event in the skipped "
                    "or repeated hour may be judged on the other side of start or stop",
                )
            )
        item = {"between": f"{start[0]:02d}:{start[1]:02d}-{stop[0]:02d}:{stop[1]:02d}", "tz": zone}
        return Atom(item)


def _number_differs(comparator: str, numbers: list[float]) -> str:
    """How a number filter decides values that are not numbers, against Argo: gjson reads
    true as 1 and every other such value as 0; tripwire's ``!=`` passes them, its other
    comparisons fail them."""
    here = comparator == "!="
    parts = []
    for value, which in (
        (0.0, "false, null, objects, arrays and text that is not a number"),
        (1.0, "true"),
    ):
        argo = any(_NUMERIC[comparator](value, n) for n in numbers)
        if argo != here:
            verb = "pass" if argo else "fail"
            parts.append(f"{which} {verb} in Argo (read as {value:g}) but not here")
    return "; ".join([*parts, _AS_NUMBER])


def _clock(raw: object, where: str) -> tuple[int, int]:
    """Hours and minutes of Argo's 'HH:MM:SS' (Go's layout 15:04:05)."""
    match = _CLOCK.fullmatch(raw) if isinstance(raw, str) else None
    if (
        match is None
        or int(match.group(1)) > 23
        or int(match.group(2)) > 59
        or int(match.group(3)) > 59
    ):
        raise DeclarationError(f"{where} {raw!r} is not HH:MM:SS; Argo refuses it.")
    if int(match.group(3)) or (match.group(4) and int(match.group(4)[1:])):
        raise Untranslatable(f"{where} {raw!r} has seconds; tripwire's time of day has minutes")
    return int(match.group(1)), int(match.group(2))

"""Argo's expression filters (govaluate syntax) as formulas over tripwire filters.

What translates: comparisons of a field with a literal (``==``, ``!=``, ``<``, ``<=``,
``>``, ``>=``, ``=~``, ``!~``), a boolean field alone or negated (``done``, ``!done``),
joined by ``&&``, ``||`` and parentheses.

govaluate is typed, and so is the translation: each comparison becomes a *strict* filter
(:mod:`triggers.filters`), which reads every JSON value as its own type. ``==`` holds
between equal values of one type (the string ``"5"`` is not the number 5, as
``reflect.DeepEqual`` has it), ``!=`` is its negation; ``<``, ``<=``, ``>``, ``>=`` compare
two numbers or two strings, ``=~`` and ``!~`` a string with a Go regex.

Where govaluate meets a type it cannot compare (``a > 5`` when ``a`` is a string, a regex
against a number, ``done`` when it is not a boolean), it fails the whole expression with an
error, and Argo rejects the event. A strict filter is false there, which rejects the event
too, except after ``||``: govaluate stops at the error and never reads the operands after
it. An expression in which an operand can fail that way on an event where a later operand
holds is refused, since tripwire's filters have no error. A comparison govaluate always
fails (a regex against a number literal, ordering booleans, a name that is not a field)
rejects every event that reaches it. Arithmetic, functions, ternaries, accessors and
string literals govaluate reads as dates are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sensors.interop.findings import Untranslatable
from sensors.interop.formula import Atom, Formula, Never, all_of, any_of
from sensors.interop.go_regex import misses_any, python_regex

__all__ = ["expression_formula"]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>&&|\|\||==|!=|>=|<=|=~|!~|>|<|!)
    | (?P<open>\() | (?P<close>\))
    | (?P<number>\d+(?:\.\d+)?)(?![\w.])
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)(?![\w.\[])
    | (?P<bad>\S+)
    )""",
    re.VERBOSE,
)
_COMPARATORS = ("==", "!=", ">=", "<=", ">", "<", "=~", "!~")
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
# govaluate reads a string literal that parses as a date as a number (Unix time).
_DATE_LIKE = re.compile(r"\d:\d\d|\d{4}-\d\d-\d\d")
_TYPES = frozenset({"number", "string", "bool", "null", "object", "array"})
_NAMES = {"number": "a number", "string": "a string", "bool": "a boolean"}

Token = tuple[str, Any]


@dataclass(frozen=True)
class _Operand:
    """One operand of ``||`` as govaluate evaluates it: the JSON types of ``field``'s value
    on which it is an error, and those on which it may hold (``field`` None: its types do
    not decide, any event may do)."""

    text: str
    field: str | None
    errors: frozenset[str]
    holds: frozenset[str]


_Part = tuple[Formula, list[_Operand]]  # a formula, and its ``||`` operands in order


def expression_formula(expression: str, fields: dict[str, str]) -> Formula:
    """The formula of one expr filter; ``fields`` maps its names to JSONPaths.

    Raises:
        Untranslatable: the expression uses what tripwire filters cannot say.
    """
    tokens = _tokens(expression)
    reader = _Reader(expression, tokens, fields)
    formula, _ = reader.disjunction()
    if reader.at != len(tokens):
        raise reader.refuse(f"unexpected {tokens[reader.at][1]!r}")
    return formula


def _tokens(expression: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(expression) and expression[at:].strip():
        match = _TOKEN.match(expression, at)
        assert match is not None and match.lastgroup is not None  # 'bad' takes anything
        kind, text = match.lastgroup, match.group(match.lastgroup)
        at = match.end()
        if kind == "bad":
            raise Untranslatable(
                f"expression {expression!r} uses {text!r}; tripwire filters take comparisons "
                "of a field with a literal, joined by && and ||"
            )
        if kind == "number":
            if math.isinf(float(text)):
                raise Untranslatable(f"expression {expression!r}: {text} is beyond a float64")
            tokens.append(("literal", float(text) if "." in text else int(text)))
        elif kind == "string":
            tokens.append(("literal", re.sub(r"\\(.)", r"\1", text[1:-1])))
        elif kind == "name" and text in ("true", "false"):
            tokens.append(("literal", text == "true"))
        else:
            tokens.append((kind, text))
    return tokens


class _Reader:
    def __init__(self, expression: str, tokens: list[Token], fields: dict[str, str]) -> None:
        self.expression, self.tokens, self.fields = expression, tokens, fields
        self.at = 0

    def refuse(self, why: str) -> Untranslatable:
        return Untranslatable(f"expression {self.expression!r}: {why}")

    def _peek(self) -> Token:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "the end")

    def _take(self) -> Token:
        token = self._peek()
        self.at += 1
        return token

    def disjunction(self) -> _Part:
        return self._joined("||", any_of, self._conjunction)

    def _conjunction(self) -> _Part:
        return self._joined("&&", all_of, self._unary)

    def _joined(
        self, operator: str, join: Callable[[list[Formula]], Formula], part: Callable[[], _Part]
    ) -> _Part:
        parts = [part()]
        while self._peek() == ("op", operator):
            self.at += 1
            parts.append(part())
        if len(parts) == 1:
            return parts[0]
        formula = join([formula for formula, _ in parts])
        if operator == "&&":
            return formula, [_conjunction([operands for _, operands in parts])]
        operands = [o for _, part_operands in parts for o in part_operands]
        for n, first in enumerate(operands):
            later = next((o for o in operands[n + 1 :] if _stops(first, o)), None)
            if later is not None:
                raise self.refuse(
                    f"{first.text} is an error when {_when(first)}, and govaluate then rejects "
                    f"the event without reading {later.text}, which may hold there; tripwire "
                    "filters have no errors, so they would let that event through"
                )
        return formula, operands

    def _unary(self) -> _Part:
        kind, text = self._take()
        if kind == "open":
            inner = self.disjunction()
            if self._take()[0] != "close":
                raise self.refuse("missing ')'")
            return inner
        if (kind, text) == ("op", "!"):
            name = self._take()
            if name[0] != "name" or self._peek()[1] in _COMPARATORS:
                raise self.refuse("'!' is translated before a boolean field only")
            return self._field_is(name[1], False)
        left = (kind, text)
        if self._peek()[1] not in _COMPARATORS:
            if kind != "name":
                raise self.refuse(f"{text!r} alone is not a condition")
            return self._field_is(text, True)
        operator = self._take()[1]
        right = self._take()
        if left[0] == "name" and right[0] == "literal":
            return self._compare(left[1], operator, right[1])
        if left[0] == "literal" and right[0] == "name" and operator in _FLIPPED:
            return self._compare(right[1], _FLIPPED[operator], left[1])
        raise self.refuse(f"{left[1]!r} {operator} {right[1]!r} is not a field against a literal")

    def _never(self, text: str, why: str) -> _Part:
        """A comparison govaluate fails with an error whenever it reaches it."""
        return Never(f"{self.expression!r}: {why}"), [_Operand(text, None, _TYPES, frozenset())]

    def _field_is(self, name: str, value: bool) -> _Part:
        text = name if value else f"!{name}"
        path = self.fields.get(name)
        if path is None:
            return self._never(text, f"{name!r} is not one of its fields")
        atom = Atom({"path": path, "op": "==", "value": value, "strict": True}, path)
        # An operand of && or || (or of !) that is not a boolean is an error.
        return atom, [_Operand(text, name, _TYPES - {"bool"}, frozenset({"bool"}))]

    def _compare(self, name: str, operator: str, literal: Any) -> _Part:
        text = f"{name} {operator} {_literal(literal)}"
        path = self.fields.get(name)
        if path is None:
            return self._never(text, f"{name!r} is not one of its fields")
        if isinstance(literal, str) and _DATE_LIKE.search(literal):
            raise self.refuse(
                f"govaluate reads the string {literal!r} as a date (a number of seconds), "
                "which a tripwire filter cannot compare with"
            )
        kind = _kind(literal)
        if operator in ("==", "!="):  # any two values compare, so never an error
            holds = frozenset({kind}) if operator == "==" else _TYPES
            item = {"path": path, "op": operator, "value": literal, "strict": True}
            return Atom(item, path), [_Operand(text, name, frozenset(), holds)]
        if kind == "bool":
            return self._never(text, f"govaluate cannot apply {operator} to a boolean")
        if operator in ("=~", "!~"):
            if kind != "string":
                return self._never(text, f"govaluate's {operator} needs a string pattern")
            pattern = python_regex(literal) if operator == "=~" else misses_any([literal])
            item = {"path": path, "op": "regex", "value": pattern, "strict": True}
        else:
            item = {"path": path, "op": operator, "value": literal, "strict": True}
        return Atom(item, path), [_Operand(text, name, _TYPES - {kind}, frozenset({kind}))]


def _stops(first: _Operand, later: _Operand) -> bool:
    """Whether ``first`` can be an error on an event where ``later`` holds."""
    if not first.errors or not later.holds:
        return False
    if first.field is None or later.field is None or first.field != later.field:
        return True
    return bool(first.errors & later.holds)


def _conjunction(parts: list[list[_Operand]]) -> _Operand:
    """One operand standing for ``&&`` of ``parts`` (each a list of ``||`` operands): an
    error where any part may be one, holding only where every part may hold."""
    texts = [" || ".join(o.text for o in part) for part in parts]
    joined = [t if len(p) == 1 else f"({t})" for t, p in zip(texts, parts, strict=True)]
    text = f"({' && '.join(joined)})"
    operands = [o for part in parts for o in part]
    fields = {o.field for o in operands}
    if len(fields) == 1 and None not in fields:
        errors = frozenset().union(*(o.errors for o in operands))
        holds = _TYPES.intersection(*(frozenset().union(*(o.holds for o in p)) for p in parts))
        return _Operand(text, operands[0].field, errors, holds)
    errors = _TYPES if any(o.errors for o in operands) else frozenset()
    holds = _TYPES if all(any(o.holds for o in part) for part in parts) else frozenset()
    return _Operand(text, None, errors, holds)


def _kind(literal: bool | float | str) -> str:
    if isinstance(literal, bool):
        return "bool"
    return "string" if isinstance(literal, str) else "number"


def _when(operand: _Operand) -> str:
    if operand.field is None:
        return "govaluate reaches it"
    allowed = _TYPES - operand.errors
    if len(allowed) == 1:
        return f"{operand.field} is not {_NAMES.get(next(iter(allowed)), 'of its type')}"
    return f"{operand.field} is of another type"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)

"""Argo's expression filters (govaluate syntax) as formulas over tripwire filters.

What translates: comparisons of a field with a literal (``==``, ``!=``, ``<``, ``<=``,
``>``, ``>=``, ``=~``, ``!~``), a boolean field alone or negated (``done``, ``!done``),
joined by ``&&``, ``||`` and parentheses. Each comparison keeps govaluate's meaning for a
value of the literal's type: strings equal as strings, regexes are Go's (searched), numbers
compare as numbers, booleans equal booleans. A comparison govaluate always fails (a regex
against a number literal, ordering booleans) rejects every event, as in Argo. Arithmetic,
functions, ternaries, accessors and string literals govaluate reads as dates are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sensors.interop.findings import Untranslatable
from sensors.interop.formula import Atom, Formula, Never, all_of, any_of
from sensors.interop.go_regex import equal_to, misses_any, not_equal_to, python_regex

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

Token = tuple[str, Any]


def expression_formula(expression: str, fields: dict[str, str]) -> Formula:
    """The formula of one expr filter; ``fields`` maps its names to JSONPaths.

    Raises:
        Untranslatable: the expression uses what tripwire filters cannot say.
    """
    tokens = _tokens(expression)
    reader = _Reader(expression, tokens, fields)
    formula = reader.disjunction()
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

    def disjunction(self) -> Formula:
        return self._joined("||", any_of, self._conjunction)

    def _conjunction(self) -> Formula:
        return self._joined("&&", all_of, self._unary)

    def _joined(
        self, operator: str, join: Callable[[list[Formula]], Formula], part: Callable[[], Formula]
    ) -> Formula:
        parts = [part()]
        while self._peek() == ("op", operator):
            self.at += 1
            parts.append(part())
        return parts[0] if len(parts) == 1 else join(parts)

    def _unary(self) -> Formula:
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

    def _path(self, name: str) -> str | None:
        return self.fields.get(name)

    def _field_is(self, name: str, value: bool) -> Formula:
        path = self._path(name)
        if path is None:
            return Never(f"{self.expression!r} names {name!r}, which is not one of its fields")
        return Atom({"path": path, "op": "==", "value": value}, path)

    def _compare(self, name: str, operator: str, literal: Any) -> Formula:
        path = self._path(name)
        if path is None:
            return Never(f"{self.expression!r} names {name!r}, which is not one of its fields")
        if isinstance(literal, bool):
            if operator not in ("==", "!="):
                return Never(f"{self.expression!r}: govaluate cannot apply {operator} to a boolean")
            return Atom({"path": path, "op": operator, "value": literal}, path)
        if isinstance(literal, int | float):
            if operator in ("=~", "!~"):
                return Never(f"{self.expression!r}: govaluate's {operator} needs a string pattern")
            return Atom({"path": path, "op": operator, "value": literal}, path)
        if _DATE_LIKE.search(literal):
            raise self.refuse(
                f"govaluate reads the string {literal!r} as a date (a number of seconds), "
                "which a tripwire filter cannot compare with"
            )
        regex = {
            "==": lambda: equal_to(literal),
            "!=": lambda: not_equal_to(literal),
            "=~": lambda: python_regex(literal),
            "!~": lambda: misses_any([literal]),
        }.get(operator)
        if regex is None:  # ordering: strings compare as strings in both
            return Atom({"path": path, "op": operator, "value": literal}, path)
        return Atom({"path": path, "op": "regex", "value": regex()}, path)

"""Go regular expressions (RE2 syntax, as Argo Events compiles them) as Python regexes that
match the same strings, and the combinations of them that filters need.

Argo *searches* a pattern in the text (``regexp.Match``), as ``re.search`` does. Where Go
and Python read a pattern differently, the Python form spells out Go's meaning: ``\\d``,
``\\w``, ``\\s`` and ``\\b`` are ASCII in Go; ``$`` without the ``m`` flag is the very end
of the text; capture groups capture nothing here (Go has no back-references); ``x{,2}``
is literal text. What has no sure equivalent (Unicode classes ``\\pL``, octal escapes, the
``U`` flag, flags in mid-pattern) is refused with the reason.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sensors.interop.findings import Untranslatable

__all__ = ["matches_any", "misses_any", "python_regex"]

Ranges = list[tuple[int, int]]

_PERL: dict[str, Ranges] = {  # Go's \d \w \s: ASCII only
    "d": [(0x30, 0x39)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
}
_POSIX: dict[str, Ranges] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
_CONTROL = {"a": 0x07, "f": 0x0C, "t": 0x09, "n": 0x0A, "r": 0x0D, "v": 0x0B}
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAGS = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")
_MAX_REPEAT = 1000  # Go refuses larger counts


def python_regex(pattern: str) -> str:
    """The Python regex that ``re.search`` matches exactly where Go's ``regexp.Match`` does.

    Raises:
        Untranslatable: a construct with no sure Python equivalent, or one Go refuses.
    """
    return _translate(pattern)


@lru_cache(maxsize=1024)
def _translate(pattern: str) -> str:
    try:
        result = _Parser(pattern).parse()
        re.compile(result)
    except (re.error, RecursionError) as exc:
        raise Untranslatable(f"the regex {pattern!r} cannot be translated: {exc}") from None
    return result


def matches_any(patterns: list[str]) -> str:
    """A regex that is found in a text when any of the Go ``patterns`` is."""
    translated = [python_regex(p) for p in patterns]
    if len(translated) == 1:
        return translated[0]
    return "|".join(f"(?:{p})" for p in translated)


def misses_any(patterns: list[str]) -> str:
    """A regex that is found in a text when at least one of the Go ``patterns`` is not.

    ``\\A(?![\\s\\S]*(?:p))`` holds at the start exactly when ``p`` occurs nowhere: the
    lookahead tries ``p`` at every position, with the whole text as context for anchors.
    """
    misses = [rf"(?![\s\S]*(?:{python_regex(p)}))" for p in patterns]
    return r"\A(?:" + "|".join(misses) + ")"


class _Parser:
    """A recursive-descent reader of one RE2 pattern, writing its Python form."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.at = 0

    def _refuse(self, why: str) -> Untranslatable:
        return Untranslatable(f"the regex {self.text!r} cannot be translated: {why}")

    def parse(self) -> str:
        flags, multiline = "", False
        leading = _FLAGS.match(self.text)
        if leading and leading.group(3) == ")":
            flags, multiline = self._flags(leading, multiline)
            self.at = leading.end()
        body = self._alternation(multiline)
        if self.at < len(self.text):
            raise self._refuse(f"unmatched ')' at {self.at}")  # Go refuses it too
        return f"(?{flags}:{body})" if flags else body

    def _flags(self, match: re.Match[str], multiline: bool) -> tuple[str, bool]:
        on, off = match.group(1), match.group(2) or ""
        if set(on + off) - set("ims") or (match.group(2) is not None and not off):
            raise self._refuse(f"flags {match.group(0)!r} (only i, m and s have an equivalent)")
        if "m" in on:
            multiline = True
        if "m" in off:
            multiline = False
        return on + (f"-{off}" if off else ""), multiline

    def _peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def _alternation(self, multiline: bool) -> str:
        parts = [self._sequence(multiline)]
        while self._peek() == "|":
            self.at += 1
            parts.append(self._sequence(multiline))
        return "|".join(parts)

    def _sequence(self, multiline: bool) -> str:
        out: list[str] = []
        repeatable = False
        while self._peek() not in ("", "|", ")"):
            repeat = self._repeat()
            if repeat is not None:
                if not repeatable:
                    raise self._refuse(f"nothing to repeat before {repeat!r}")
                out[-1] += repeat
                repeatable = False
                continue
            atom, repeatable = self._atom(multiline)
            out.append(atom)
        return "".join(out)

    def _repeat(self) -> str | None:
        """A repetition operator at the cursor (with its lazy '?'), or None."""
        char = self._peek()
        if char in ("*", "+", "?"):
            self.at += 1
            text = char
        elif char == "{" and (match := _REPEAT.match(self.text, self.at)):
            low, comma, high = match.group(1), match.group(2), match.group(3)
            if int(low) > _MAX_REPEAT or (high and int(high) > _MAX_REPEAT):
                raise self._refuse(f"repeat count {match.group(0)} is over {_MAX_REPEAT}")
            if high and int(high) < int(low):
                raise self._refuse(f"invalid repeat count {match.group(0)}")
            self.at = match.end()
            text = f"{{{int(low)}{',' + str(int(high)) if high else (',' if comma else '')}}}"
        else:
            return None
        if self._peek() == "?":
            self.at += 1
            text += "?"
        return text

    def _atom(self, multiline: bool) -> tuple[str, bool]:
        """The Python form of the atom at the cursor, and whether it may be repeated."""
        char = self._peek()
        self.at += 1
        if char == "(":
            return self._group(multiline), True
        if char == "[":
            return _render_class(*self._class()), True
        if char == ".":
            return ".", True
        if char == "^":
            return "^", False
        if char == "$":
            return ("$" if multiline else r"\Z"), False
        if char == "\\":
            return self._escape()
        return _literal(char), True

    def _group(self, multiline: bool) -> str:
        opening = "(?:"
        if self.text.startswith("?", self.at):
            flags = _FLAGS.match(self.text, self.at - 1)
            named = re.compile(r"\?P?<[A-Za-z0-9_]+>").match(self.text, self.at)
            if self.text.startswith("?:", self.at):
                self.at += 2
            elif named:
                self.at = named.end()
            elif flags and flags.group(3) == ":":
                text, multiline = self._flags(flags, multiline)
                opening = f"(?{text}:"
                self.at = flags.end()
            elif flags:
                raise self._refuse("flags in mid-pattern; put them at the start")
            else:
                raise self._refuse(f"the group at {self.at - 1} (Go has no lookaround)")
        inner = self._alternation(multiline)
        if self._peek() != ")":
            raise self._refuse("missing ')'")
        self.at += 1
        return f"{opening}{inner})"

    def _escape(self) -> tuple[str, bool]:
        char = self._peek()
        self.at += 1
        if char.lower() in _PERL:
            return _render_class(_PERL[char.lower()], char.isupper()), True
        if char in ("b", "B"):
            return rf"(?a:\{char})", False  # Go's word boundary is ASCII
        if char == "A":
            return r"\A", False
        if char == "z":
            return r"\Z", False
        if char == "Q":
            end = self.text.find(r"\E", self.at)
            literal = self.text[self.at : end if end >= 0 else len(self.text)]
            self.at = end + 2 if end >= 0 else len(self.text)
            return f"(?:{_text(literal)})", True
        return _literal(chr(self._code(char))), True

    def _code(self, char: str) -> int:
        """The character an escape other than a class or an anchor stands for."""
        if char in _CONTROL:
            return _CONTROL[char]
        if char == "x":
            hexa = re.compile(r"\{([0-9A-Fa-f]{1,8})\}|([0-9A-Fa-f]{2})").match(self.text, self.at)
            if hexa is None or int(hexa.group(1) or hexa.group(2), 16) > 0x10FFFF:
                raise self._refuse("a bad \\x escape")
            self.at = hexa.end()
            return int(hexa.group(1) or hexa.group(2), 16)
        if char and char.isascii() and not char.isalnum() and char not in " \t\n":
            return ord(char)
        raise self._refuse(f"the escape \\{char} (Unicode classes and octal are not translated)")

    def _class(self) -> tuple[Ranges, bool]:
        negate = self._peek() == "^"
        if negate:
            self.at += 1
        ranges: Ranges = []
        first = True
        while True:
            char = self._peek()
            if not char:
                raise self._refuse("missing ']'")
            if char == "]" and not first:
                self.at += 1
                return ranges, negate
            first = False
            if self.text.startswith("[:", self.at):
                ranges += self._posix()
                continue
            low = self._class_char()
            if isinstance(low, list):
                ranges += low
                continue
            if self._peek() == "-" and self.text[self.at + 1 : self.at + 2] not in ("]", ""):
                self.at += 1
                high = self._class_char()
                if isinstance(high, list) or high < low:
                    raise self._refuse("a bad range in a character class")
                ranges.append((low, high))
            else:
                ranges.append((low, low))

    def _posix(self) -> Ranges:
        end = self.text.find(":]", self.at + 2)
        name = self.text[self.at + 2 : end] if end >= 0 else ""
        if name not in _POSIX:
            raise self._refuse(f"the class [:{name}:] (negated or unknown)")
        self.at = end + 2
        return _POSIX[name]

    def _class_char(self) -> int | Ranges:
        char = self._peek()
        self.at += 1
        if char != "\\":
            return ord(char)
        escaped = self._peek()
        self.at += 1
        if escaped in _PERL:
            return _PERL[escaped]
        if escaped.lower() in _PERL:
            raise self._refuse(f"\\{escaped} inside a character class")
        return self._code(escaped)


def _text(text: str) -> str:
    return "".join(_literal(char) for char in text)


def _literal(char: str) -> str:
    """``char`` as a literal outside a class: special characters escaped, others as they are."""
    if char in ".^$*+?{}[]\\|()":
        return "\\" + char
    if not char.isprintable() or (char.isspace() and char != " "):
        return _class_char(ord(char))
    return char


def _render_class(ranges: Ranges, negate: bool) -> str:
    body = "".join(
        _class_char(low) if low == high else f"{_class_char(low)}-{_class_char(high)}"
        for low, high in ranges
    )
    return f"[{'^' if negate else ''}{body}]"


def _class_char(code: int) -> str:
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

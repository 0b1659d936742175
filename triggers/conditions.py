"""Trigger conditions in Argo Events syntax: ``"a && (b || c)"`` over dependency names.

A small recursive-descent parser (``&&`` binds tighter than ``||``); nothing is
ever evaluated as Python. A parsed condition answers whether a set of satisfied
dependencies makes it true.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache

from triggers.errors import DeclarationError

__all__ = ["All", "Any_", "Condition", "Dep", "parse_condition"]

_TOKEN = re.compile(
    r"\s*(?:(?P<and>&&)|(?P<or>\|\|)|(?P<open>\()|(?P<close>\))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_\-.]*)|(?P<bad>\S))"
)

MAX_NESTING = 100  # parentheses in one condition: the parser recurses into each

_SHOW = {"open": "'('", "close": "')'", "name": "a dependency name"}


@dataclass(frozen=True, slots=True)
class Dep:
    name: str

    def holds(self, satisfied: AbstractSet[str]) -> bool:
        return self.name in satisfied


@dataclass(frozen=True, slots=True)
class All:
    parts: tuple[Condition, ...]
    # All of plain names (the default condition) is a subset test: checked on every event.
    _names: frozenset[str] | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if all(isinstance(p, Dep) for p in self.parts):
            names = frozenset(p.name for p in self.parts if isinstance(p, Dep))
            object.__setattr__(self, "_names", names)

    def holds(self, satisfied: AbstractSet[str]) -> bool:
        if self._names is not None:
            return self._names <= satisfied
        return all(p.holds(satisfied) for p in self.parts)


@dataclass(frozen=True, slots=True)
class Any_:
    parts: tuple[Condition, ...]

    def holds(self, satisfied: AbstractSet[str]) -> bool:
        return any(p.holds(satisfied) for p in self.parts)


Condition = Dep | All | Any_


@lru_cache(maxsize=1024)
def all_of(names: tuple[str, ...]) -> Condition:
    """The default condition: every dependency.

    Cached, so that sensors with the same dependency names share one condition: an
    engine with 100,000 sensors reads it for every event and keeps it in cache.
    """
    return All(tuple(Dep(n) for n in names))


@lru_cache(maxsize=1024)
def _parse(text: str) -> tuple[Condition, frozenset[str]]:
    tokens: list[tuple[str, str]] = []
    position = opened = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            break
        position = match.end()
        kind = match.lastgroup or "bad"
        if kind == "bad":
            raise ValueError(f"unexpected {match.group(kind)!r}")
        tokens.append((kind, match.group(kind)))
        opened += kind == "open"
        if opened > MAX_NESTING:
            raise ValueError(f"it has more than {MAX_NESTING} parentheses")
    names: set[str] = set()
    index = 0

    def peek() -> str | None:
        return tokens[index][0] if index < len(tokens) else None

    def take(kind: str) -> str:
        nonlocal index
        if peek() != kind:
            found = tokens[index][1] if index < len(tokens) else "the end"
            raise ValueError(f"expected {_SHOW.get(kind, kind)} but found {found!r}")
        index += 1
        return tokens[index - 1][1]

    def disjunction() -> Condition:
        parts = [conjunction()]
        while peek() == "or":
            take("or")
            parts.append(conjunction())
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def conjunction() -> Condition:
        parts = [atom()]
        while peek() == "and":
            take("and")
            parts.append(atom())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def atom() -> Condition:
        if peek() == "open":
            take("open")
            inner = disjunction()
            take("close")
            return inner
        name = take("name")
        names.add(name)
        return Dep(name)

    if not tokens:
        raise ValueError("it is empty")
    tree = disjunction()
    if index != len(tokens):
        raise ValueError(f"unexpected {tokens[index][1]!r}")
    return tree, frozenset(names)


def parse_condition(text: str, known: Iterable[str]) -> Condition:
    """Parse ``text`` and check that it names only ``known`` dependencies.

    Raises:
        DeclarationError: bad syntax or an unknown name; the message lists the known names.
    """
    known_names = sorted(known)
    try:
        tree, names = _parse(text)
    except ValueError as exc:
        raise DeclarationError(
            f"cannot parse conditions={text!r}: {exc}. Write e.g. 'a && (b || c)' "
            f"over the dependency names {known_names}."
        ) from None
    unknown = sorted(names - set(known_names))
    if unknown:
        raise DeclarationError(
            f"conditions={text!r} names {unknown[0]!r}, which is not a dependency; "
            f"the dependencies are {known_names} (set 'dep' on an event to rename it)."
        )
    return tree

"""Boolean formulas over tripwire filters, and the one flat list a dependency can hold.

Argo nests its filters: kinds (exprs, data, context, time) joined by one operator, each
kind a list joined by another, each expression a tree of ``&&`` and ``||``. A tripwire
dependency holds one list of filters joined by ``and`` or ``or``. A formula is simplified
(constants folded, nested junctions of one kind merged, an ``exists`` implied by a
comparison on the same path dropped) and must then be that flat list, or it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sensors.interop.findings import Untranslatable

__all__ = ["ALWAYS", "Atom", "Formula", "Junction", "Never", "all_of", "any_of", "flatten"]


@dataclass(frozen=True)
class Atom:
    """One tripwire filter as declared; ``path`` is the JSONPath it reads (None for a time
    of day). Every comparison fails on an event without that path."""

    item: dict[str, Any]
    path: str | None = None

    def text(self) -> str:
        if self.path is None:
            return f"time between {self.item['between']} ({self.item.get('tz', 'UTC')})"
        return f"{self.path} {self.item['op']} {self.item.get('value')!r}"


@dataclass(frozen=True)
class Always:
    """Holds for every event."""


@dataclass(frozen=True)
class Never:
    """Holds for no event, and why: in Argo too, this part rejects every event."""

    reason: str


@dataclass(frozen=True)
class Junction:
    kind: Literal["and", "or"]
    parts: tuple[Formula, ...]


Formula = Atom | Always | Never | Junction
ALWAYS = Always()


def all_of(parts: list[Formula]) -> Formula:
    return Junction("and", tuple(parts))


def any_of(parts: list[Formula]) -> Formula:
    return Junction("or", tuple(parts))


def flatten(formula: Formula) -> tuple[list[dict[str, Any]], Literal["and", "or"]]:
    """The filters and operator of one tripwire dependency that hold exactly when
    ``formula`` does.

    Raises:
        Untranslatable: no event passes (Argo's filter rejects them all), or the formula
            needs both operators.
    """
    simple = _simplify(formula)
    if isinstance(simple, Always):
        return [], "and"
    if isinstance(simple, Never):
        raise Untranslatable(f"its filters let no event through, in Argo either: {simple.reason}")
    if isinstance(simple, Atom):
        return [simple.item], "and"
    assert isinstance(simple, Junction)
    if all(isinstance(p, Atom) for p in simple.parts):
        return [p.item for p in simple.parts if isinstance(p, Atom)], simple.kind
    raise Untranslatable(
        "tripwire joins one dependency's filters with a single operator (and, or), and these "
        f"need both: {_text(simple)}"
    )


def _simplify(formula: Formula) -> Formula:
    if not isinstance(formula, Junction):
        return formula
    kind = formula.kind
    parts: list[Formula] = []
    for part in (_simplify(p) for p in formula.parts):
        merged = part.parts if isinstance(part, Junction) and part.kind == kind else (part,)
        parts += [p for p in merged if p not in parts]
    nevers = [p for p in parts if isinstance(p, Never)]
    if kind == "and":
        if nevers:
            return nevers[0]
        parts = [p for p in parts if not isinstance(p, Always) and not _implied(p, parts)]
        if not parts:
            return ALWAYS
    else:
        if any(isinstance(p, Always) for p in parts):
            return ALWAYS
        parts = [p for p in parts if not isinstance(p, Never)]
        if not parts:
            reasons = "; ".join(n.reason for n in nevers) or "it has no filter an event can pass"
            return Never(reasons)
    return parts[0] if len(parts) == 1 else Junction(kind, tuple(parts))


def _implied(part: Formula, siblings: list[Formula]) -> bool:
    """Whether ``part`` is an ``exists`` that another conjunct implies: any comparison on
    the same path fails when the path is missing."""
    if not (isinstance(part, Atom) and part.item.get("op") == "exists" and part.path):
        return False
    return any(s is not part and _strict_on(s, part.path) for s in siblings)


def _strict_on(formula: Formula, path: str) -> bool:
    if isinstance(formula, Atom):
        return formula.path == path
    if isinstance(formula, Junction):
        return all(_strict_on(p, path) for p in formula.parts)
    return False


def _text(formula: Formula) -> str:
    if isinstance(formula, Atom):
        return formula.text()
    if isinstance(formula, Junction):
        joint = " && " if formula.kind == "and" else " || "
        return "(" + joint.join(_text(p) for p in formula.parts) + ")"
    return "true" if isinstance(formula, Always) else "false"

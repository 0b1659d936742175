"""Python source for generated flow files: literals laid out to read, and code kept as is."""

from __future__ import annotations

import ast
import json
import keyword
import re
import textwrap
from typing import Any

__all__ = ["Code", "comment", "identifier", "literal", "reserved_names"]

_WIDTH = 88


class Code(str):
    """Python code to write as it is, not as a string literal."""


def literal(value: Any, indent: int = 0) -> str:
    """``value`` (JSON-like data, or :class:`Code`) as Python source, one item per line
    when it does not fit on one."""
    if isinstance(value, Code):
        return str(value)
    flat = _flat(value)
    if len(flat) + indent <= _WIDTH or not isinstance(value, dict | list) or not value:
        return flat
    inner = " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{inner}{_flat(k)}: {literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{inner}{literal(v, indent + 4)}," for v in value]
    return "[\n" + "\n".join(items) + "\n" + " " * indent + "]"


def _flat(value: Any) -> str:
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    if isinstance(value, str):
        # A JSON string is a Python string literal of the same value, in double quotes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float | bool) or value is None:
        return repr(value)
    raise TypeError(f"no literal for {type(value).__name__}")


def reserved_names(code: str) -> frozenset[str]:
    """The names ``code`` binds at its top level (imports, definitions) or reads without
    binding them (builtins, globals): what a name written in or next to it must not be."""
    tree = ast.parse(code)
    top: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom) and not (
            isinstance(statement, ast.ImportFrom) and statement.module == "__future__"
        ):
            top |= {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
        elif isinstance(statement, ast.FunctionDef | ast.ClassDef):
            top.add(statement.name)
    bound: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return frozenset(top | (read - bound))


def identifier(text: str, taken: set[str]) -> str:
    """A fresh Python identifier made of ``text`` (added to ``taken``)."""
    base = re.sub(r"\W+", "_", text).strip("_") or "flow"
    if base[0].isdigit():
        base = f"_{base}"
    if keyword.iskeyword(base):
        base += "_"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


def comment(text: str, width: int = 100) -> list[str]:
    """``text`` as comment lines of at most ``width`` characters, continued lines indented
    (a manifest value's own newlines would end the comment, so they become spaces)."""
    # Other control characters (a NUL byte would make the file unloadable) are escaped.
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(text.split()))
    lines = textwrap.wrap(
        shown,
        width - 2,
        subsequent_indent="    ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [f"# {line}" for line in lines or [""]]

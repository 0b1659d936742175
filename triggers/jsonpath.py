"""JSONPath expressions, as filters, mappings, correlation keys and sources use them:
compiled once and checked where they are declared, and evaluated so that no payload can
fail a worker."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from triggers.errors import DeclarationError

__all__ = ["compile_jsonpath", "values_at"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=4096)
def compile_jsonpath(expression: str) -> Any:
    """Parse a JSONPath once; raise DeclarationError saying what is wrong with it, also when
    it parses but jsonpath-ng cannot evaluate it (a trial on an empty object tells).

    jsonpath-ng is imported here, on the first expression: a publisher that imports the
    SDK declares none, and its parser costs 7 ms to import."""
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.ext import parse as parse_jsonpath

    try:
        compiled = parse_jsonpath(expression)
        compiled.find({})
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        reason = str(exc) or f"{type(exc).__name__}: it cannot be evaluated"
        raise DeclarationError(f"invalid JSONPath {expression!r}: {reason}") from None
    if _has_arithmetic(compiled):
        raise DeclarationError(
            f"invalid JSONPath {expression!r}: arithmetic (+ - * /) is not allowed, since it "
            "would compute with payload values (a long string times a big number takes all "
            "memory). Select the values and compute in the flow; a literal '*' wildcard is "
            "written `$.a.*` or `$.a[*]`."
        )
    return compiled


def _has_arithmetic(node: Any, depth: int = 0) -> bool:
    """True if the parsed JSONPath ``node`` computes anywhere (jsonpath-ng's Operation)."""
    from jsonpath_ng import JSONPath
    from jsonpath_ng.ext.arithmetic import Operation
    from jsonpath_ng.ext.filter import Expression

    if isinstance(node, Operation):
        return True
    if depth > 100:  # parsed trees are shallow; this only guards the walk
        return False
    children = vars(node).values() if hasattr(node, "__dict__") else ()
    for child in children:
        items = child if isinstance(child, (list, tuple)) else (child,)
        for item in items:
            if isinstance(item, (JSONPath, Expression)) and _has_arithmetic(item, depth + 1):
                return True
    return False


def values_at(expression: str, payload: dict[str, Any]) -> list[Any]:
    """The values ``expression`` (a JSONPath that compiled) selects in ``payload``.

    An expression that fails on this payload (jsonpath-ng raises for some, e.g. a
    filter comparing a number with a string) selects nothing: a payload is data, and
    no payload may stop a worker."""
    try:
        return [match.value for match in compile_jsonpath(expression).find(payload)]
    except Exception as exc:
        log.debug("JSONPath %r failed on a payload: %s", expression, exc)
        return []

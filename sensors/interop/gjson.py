"""gjson paths (how Argo Events addresses event data) as JSONPaths over a tripwire payload.

Argo's event data wraps the message: a webhook's is ``{"header": ..., "body": ...}``, a
Kafka message's ``{"topic", "key", ..., "body"}``. A tripwire event's payload is the body
itself, so a path under the payload root (``body`` by default) reads from ``$``:
``body.order.id`` is ``$.order.id``. Plain keys and array indexes translate; gjson's
queries, wildcards, modifiers and multipaths do not.
"""

from __future__ import annotations

import re

from sensors.interop.findings import Untranslatable
from triggers.errors import DeclarationError
from triggers.jsonpath import compile_jsonpath

__all__ = ["indexes", "jsonpath_of"]

_SPECIAL = set("*?#@|,()[]{}!=<>%")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def jsonpath_of(path: str, root: str) -> str:
    """The JSONPath that reads what gjson ``path`` reads, with ``root`` as the payload.

    A number in the path reads an array element (``commits.0`` is ``commits[0]``); gjson
    would read an object key "0" there too.

    Raises:
        Untranslatable: the path uses gjson syntax beyond keys and indexes, or reads
            outside ``root``.
    """
    parts = _split(path)
    if root:
        if parts[: len(root.split("."))] != root.split("."):
            raise Untranslatable(
                f"path {path!r} reads outside {root!r}: a tripwire event's payload is the "
                f"message {root} (see --payload-root)"
            )
        parts = parts[len(root.split(".")) :]
    text = "$"
    for part in parts:
        if part.isdigit():
            text += f"[{int(part)}]"
        elif _IDENTIFIER.fullmatch(part) and _reads_key(f"{text}.{part}", part):
            text += f".{part}"
        else:
            text += "['" + part.replace("\\", "\\\\").replace("'", "\\'") + "']"
    try:
        compile_jsonpath(text)
    except DeclarationError as exc:
        raise Untranslatable(f"path {path!r}: {exc}") from None
    return text


def indexes(path: str) -> bool:
    """Whether a gjson path has a number in it, read as an array index."""
    return any(part.isdigit() for part in _split(path))


def _split(path: str) -> list[str]:
    """The keys of a gjson path: split on unescaped dots, escapes resolved."""
    if not path:
        raise Untranslatable("an empty path")
    parts, current, escaped = [], "", False
    for char in path:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append(current)
            current = ""
        elif char in _SPECIAL:
            raise Untranslatable(
                f"path {path!r} uses gjson's {char!r} (queries, wildcards, modifiers and "
                "multipaths have no translation); select a plain key"
            )
        else:
            current += char
    parts.append(current)
    if escaped or "" in parts:
        raise Untranslatable(f"path {path!r} is not a plain gjson path of keys")
    return parts


def _reads_key(jsonpath: str, key: str) -> bool:
    """Whether ``$....key`` parses as that key (jsonpath-ng reserves a few words)."""
    try:
        return str(compile_jsonpath(jsonpath)).endswith(key)
    except DeclarationError:
        return False

"""Manifests read as Kubernetes reads them: YAML that becomes JSON.

Kubernetes turns a manifest's YAML into JSON before anything reads it, so a date
(``2024-01-01``) or a clock time (``10:00:00``) stays the text it is, where PyYAML's
YAML 1.1 rules would make a ``date`` and a number of seconds of them. What JSON cannot
hold (an alias inside its own anchor, ``!!binary``, ``!!set``, ``.nan``, text with a lone
surrogate) is refused, naming where it is, as Kubernetes refuses it.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from triggers.errors import DeclarationError

__all__ = ["check_json", "load", "load_all"]


class _KubernetesLoader(yaml.SafeLoader):
    """PyYAML's safe loader, keeping dates and base-60 numbers as text."""


def _text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


def _number(base: str) -> Any:
    construct = getattr(yaml.SafeLoader, f"construct_yaml_{base}")

    def number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        text = str(loader.construct_scalar(node))
        return text if ":" in text else construct(loader, node)  # 1:30 is not 90

    return number


_KubernetesLoader.add_constructor("tag:yaml.org,2002:timestamp", _text)
_KubernetesLoader.add_constructor("tag:yaml.org,2002:int", _number("int"))
_KubernetesLoader.add_constructor("tag:yaml.org,2002:float", _number("float"))


def load_all(text: str, origin: str) -> list[Any]:
    """The documents of a YAML text, as Kubernetes reads them (unchecked: see
    :func:`check_json`).

    Raises:
        DeclarationError: the text is not YAML; the message says where.
    """
    try:
        return list(yaml.load_all(text, Loader=_KubernetesLoader))  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise DeclarationError(f"{origin} is not valid YAML{at}: {problem}.") from None
    except RecursionError:
        raise DeclarationError(f"{origin} nests YAML too deeply to read.") from None


def load(text: str, where: str) -> Any:
    """One YAML document (a resource written inline at ``where``), as Kubernetes reads it.

    Raises:
        DeclarationError: not one YAML document, or not JSON.
    """
    documents = [d for d in load_all(text, where) if d is not None]
    if len(documents) != 1:
        raise DeclarationError(f"{where} holds {len(documents)} YAML documents, not one.")
    check_json(documents[0], where)
    return documents[0]


def check_json(document: Any, origin: str) -> None:
    """Check that a document read from YAML is JSON, as Kubernetes needs.

    Raises:
        DeclarationError: the first value that is not, named by its place in ``origin``.
    """
    _check(document, origin, "", set(), set())


def _check(value: Any, origin: str, where: str, around: set[int], done: set[int]) -> None:
    def refuse(why: str) -> DeclarationError:
        return DeclarationError(f"{origin}: {where or 'the document'} {why}")

    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise refuse(
                    f"holds text that is not Unicode ({value!r}: a lone surrogate); "
                    "Kubernetes refuses it."
                ) from None
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise refuse(f"is {value}, which JSON cannot hold; write a number.")
        return
    if not isinstance(value, dict | list):
        raise refuse(
            f"holds a {type(value).__name__} (a YAML tag such as !!binary or !!set), which "
            "JSON cannot hold; Kubernetes refuses it."
        )
    if id(value) in around:
        raise refuse("holds itself (a YAML alias inside its own anchor); Kubernetes refuses it.")
    if id(value) in done:  # an alias of a value already checked
        return
    around.add(id(value))
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(value, dict):
            here = f"{where}.{key}" if where else str(key)
            _check(key, origin, f"the key of {here}", around, done)
        else:
            here = f"{where}[{key}]"
        _check(item, origin, here, around, done)
    around.discard(id(value))
    done.add(id(value))

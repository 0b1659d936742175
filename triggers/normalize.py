"""Declarations as users write them, normalised into the spec models.

Every argument form Metaflow's ``@trigger`` accepts (an event name or dict,
lists of them, ``parameters`` as a dict or as names and pairs), plus
tripwire's wildcards, filters and ``correlate_by``, becomes validated
:class:`~triggers.spec.EventDependency` s here, with a message that says what
to write instead when something is wrong.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from triggers.envelope import validate_event_name
from triggers.errors import DeclarationError
from triggers.filters import parse_filter
from triggers.jsonpath import compile_jsonpath
from triggers.spec import EVENT_ATTRIBUTES, EventDependency

__all__ = ["did_you_mean", "event_name", "normalize_correlation", "normalize_dependencies"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EVENT_KEYS = ("name", "parameters", "dep", "filters", "filters_operator")


def normalize_dependencies(
    event: Any, events: Any, *, parameter_names: Iterable[str]
) -> tuple[EventDependency, ...]:
    """Accept every Metaflow argument form and return validated dependencies."""
    if (event is None) == (events is None):
        raise DeclarationError(
            "pass exactly one of event=... (one event) or events=[...] (several)."
        )
    if event is not None:
        items = [event]
    elif isinstance(events, list | tuple) and events:
        items = list(events)
    else:
        raise DeclarationError("events= must be a non-empty list of names or dicts.")
    names = list(parameter_names)
    deps = tuple(_dependency(item, names) for item in items)
    seen: set[str] = set()
    for dep in deps:
        if dep.dep in seen:
            raise DeclarationError(
                f"dependency name {dep.dep!r} is used twice; give one of them "
                "another name with {'name': ..., 'dep': 'other_name'}."
            )
        seen.add(dep.dep)
    return deps


def _dependency(item: Any, parameter_names: list[str]) -> EventDependency:
    if isinstance(item, str):
        return EventDependency(name=event_name(item), dep=item)
    if not isinstance(item, dict):
        raise DeclarationError(
            "an event must be a name or a dict like "
            f"{{'name': 'data_updated', 'parameters': {{...}}}}, not {type(item).__name__}."
        )
    unknown = set(item) - set(_EVENT_KEYS)
    if unknown:
        key = sorted(unknown)[0]
        raise DeclarationError(
            f"unknown key {key!r} in event declaration"
            f"{did_you_mean(key, _EVENT_KEYS)}; the keys are {list(_EVENT_KEYS)}."
        )
    if "name" not in item:
        raise DeclarationError(
            f"event dict {item!r} has no 'name'; write {{'name': 'data_updated', ...}}."
        )
    name = event_name(item["name"])
    dep = item.get("dep", name)
    if "dep" in item and (not isinstance(dep, str) or not _IDENTIFIER.match(dep)):
        raise DeclarationError(
            f"dep={dep!r} must be an identifier (letters, digits and _, not "
            "starting with a digit), because conditions refer to it."
        )
    here = f"event {name!r}"
    mapping = _mapping(item.get("parameters"), parameter_names, here)
    raw_filters = item.get("filters") or []
    if not isinstance(raw_filters, list | tuple):
        raw_filters = [raw_filters]
    operator = item.get("filters_operator", "and")
    if operator not in ("and", "or"):
        raise DeclarationError(f"{here}: filters_operator must be 'and' or 'or', not {operator!r}.")
    return EventDependency(
        name=name,
        dep=dep,
        parameters=mapping,
        filters=tuple(parse_filter(f, where=here) for f in raw_filters),
        filters_operator=operator,
    )


def event_name(name: object) -> str:
    """An event name, or a prefix ending in ``*`` that matches every name starting with it."""
    if isinstance(name, str) and name.endswith("*"):
        prefix = name[:-1]
        if not prefix or "*" in prefix:
            raise DeclarationError(
                f"{name!r} is not a wildcard; write a prefix followed by one '*' at "
                "the end, e.g. 'orders.*'."
            )
        validate_event_name(prefix, error=DeclarationError)
        return name
    return validate_event_name(name, error=DeclarationError)


def _mapping(raw: Any, parameter_names: list[str], where: str) -> dict[str, str] | None:
    if raw is None:
        return None
    pairs: list[tuple[Any, Any]]
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list | tuple):
        pairs = []
        for entry in raw:
            if isinstance(entry, str):
                pairs.append((entry, entry))
            elif isinstance(entry, list | tuple) and len(entry) == 2:
                pairs.append((entry[0], entry[1]))
            else:
                raise DeclarationError(
                    f"{where}: parameters list entries must be a name or a "
                    f"(flow_param, event_field) pair, not {entry!r}."
                )
    else:
        raise DeclarationError(
            f"{where}: parameters must be a dict {{param: field}} or a list of names and "
            f"(param, field) pairs, not {type(raw).__name__}."
        )
    mapping: dict[str, str] = {}
    for param, source in pairs:
        if not isinstance(param, str) or param not in parameter_names:
            raise DeclarationError(
                f"{where}: {param!r} is not a parameter of the flow"
                f"{did_you_mean(str(param), parameter_names)}; parameters are {parameter_names}."
            )
        if not isinstance(source, str) or not source:
            raise DeclarationError(
                f"{where}: the source of parameter {param!r} must be a field name or a "
                f"JSONPath string, not {source!r}."
            )
        if source.startswith("$") and source not in EVENT_ATTRIBUTES:
            try:
                compile_jsonpath(source)
            except DeclarationError as exc:
                raise DeclarationError(f"{where}: parameter {param!r}: {exc}") from None
        mapping[param] = source
    return mapping


def normalize_correlation(
    correlate_by: Any, dependencies: tuple[EventDependency, ...]
) -> dict[str, str] | None:
    """``"$.date"`` (every dependency) or ``{dep: "$.path"}`` into one JSONPath per dependency.

    Raises:
        DeclarationError: not a JSONPath, or a dependency without a key path.
    """
    if correlate_by is None:
        return None
    names = [d.dep for d in dependencies]
    if isinstance(correlate_by, str):
        correlate_by = dict.fromkeys(names, correlate_by)
    if not isinstance(correlate_by, dict):
        raise DeclarationError(
            "correlate_by is a JSONPath like '$.date', or a dict "
            f"{{dependency: JSONPath}}, not {type(correlate_by).__name__}."
        )
    missing = [n for n in names if n not in correlate_by]
    unknown = [n for n in correlate_by if n not in names]
    if missing or unknown:
        raise DeclarationError(
            f"correlate_by must give a JSONPath for each dependency {names}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
            + "."
        )
    for path in correlate_by.values():
        if not isinstance(path, str) or not path.startswith("$"):
            raise DeclarationError(f"correlate_by path {path!r} must be a JSONPath ($...).")
        compile_jsonpath(path)
    return dict(correlate_by)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

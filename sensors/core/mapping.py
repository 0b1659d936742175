"""Payload -> flow parameters (pure).

Default matching (Metaflow's): a payload field whose name equals a parameter
name fills it. An explicit mapping turns default matching off and maps each
parameter from a top-level field, a JSONPath over the payload (``$...``), or
an event attribute (``$event.id``, ``$event.name``, ``$event.time``,
``$event.source``). A JSONPath with one match gives that value, with several
the list of them, with none it leaves the parameter to its default: a mapping
that matched nothing (:func:`unmatched`) is most often a misspelt field, and the
run says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from triggers.envelope import Envelope
from triggers.jsonpath import values_at
from triggers.spec import EVENT_ATTRIBUTES, EventDependency

__all__ = ["extract_parameters", "unmatched"]

_MISSING = object()


def extract_parameters(
    dependency: EventDependency, envelope: Envelope, parameter_names: Iterable[str]
) -> dict[str, Any]:
    """The raw (uncoerced) parameter values one event provides."""
    payload = envelope.payload
    if dependency.parameters is None:
        return {name: payload[name] for name in parameter_names if name in payload}
    values: dict[str, Any] = {}
    for param, source in dependency.parameters.items():
        value = _read(source, envelope)
        if value is not _MISSING:
            values[param] = value
    return values


def unmatched(dependency: EventDependency, values: Mapping[str, Any]) -> dict[str, str]:
    """The explicitly mapped parameters that ``values`` (what :func:`extract_parameters`
    read from one event) lacks, each with its source: the mappings that matched nothing.

    Default matching maps nothing explicitly: an event without a field named like a
    parameter is normal there, and counts for nothing.
    """
    mapping = dependency.parameters
    if mapping is None or len(values) == len(mapping):
        return {}
    return {param: source for param, source in mapping.items() if param not in values}


def _read(source: str, envelope: Envelope) -> Any:
    if source in EVENT_ATTRIBUTES:
        attribute = source.removeprefix("$event.")
        if attribute == "time":
            return envelope.time.isoformat() if envelope.time else _MISSING
        return getattr(envelope, attribute)
    if source.startswith("$"):
        matches = values_at(source, envelope.payload)
        if not matches:
            return _MISSING
        return matches[0] if len(matches) == 1 else matches
    return envelope.payload.get(source, _MISSING)

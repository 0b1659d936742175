"""Argo trigger parameters (``src`` and ``dest``) as flow parameters and target templates.

Argo resolves a parameter from one dependency's event (``ResolveParamValue``): the value at
``dataKey`` (a gjson path into the event data) or at ``contextKey``, as text; ``value`` when
the key is missing or the dependency did not take part; and nothing (``dest`` keeps the
template's value) when neither. tripwire maps a flow parameter from a JSONPath of the
payload, and a parameter no event filled keeps its default. So:

- a dependency that takes part in every fire (the trigger's condition needs it) and a
  parameter without ``value`` give a *required* parameter: a missing key is a trigger
  failure and no run, as in Argo;
- ``value`` becomes the default;
- a dependency that may not take part (``a || b``) without ``value`` leaves the template's
  value as the default. Argo would fail when that dependency's event lacks the key; tripwire
  runs with the default (reported as a difference).

``operation: append`` / ``prepend`` put the template's value before / after the parameter.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from sensors.interop.findings import Finding, Untranslatable
from sensors.interop.gjson import jsonpath_of
from triggers.conditions import Condition
from triggers.targets import CONTEXT_FIELDS

__all__ = [
    "REQUIRED",
    "Binding",
    "Param",
    "ParamContext",
    "Source",
    "bind",
    "escape",
    "read_source",
]

REQUIRED: Any = object()
_SIMPLE_TEMPLATE = re.compile(r"\{\{-?\s*\.Input((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*-?\}\}")
_CONTEXT_KEYS = {"id": "$event.id", "time": "$event.time"}
_SRC_KEYS = (
    "dependencyName",
    "dataKey",
    "dataTemplate",
    "contextKey",
    "contextTemplate",
    "value",
    "useRawData",
)


@dataclass
class ParamContext:
    """What resolving a trigger's parameters needs to know about the trigger."""

    trigger: str
    dependencies: dict[str, str]  # Argo dependency name -> tripwire dependency name
    event_names: dict[str, str]  # Argo dependency name -> tripwire event name
    subjects: dict[str, str]  # Argo dependency name -> its Argo eventName
    condition: Condition
    root: str
    findings: list[Finding] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)  # names a parameter must not take

    def always(self, dependency: str) -> bool:
        """Whether every fire of the trigger has an event of ``dependency``."""
        others = set(self.dependencies.values()) - {self.dependencies[dependency]}
        return not self.condition.holds(others)

    def name(self, hint: str) -> str:
        """A fresh flow parameter name made of ``hint``."""
        base = re.sub(r"\W+", "_", hint).strip("_") or "value"
        if base[0].isdigit():
            base = f"p_{base}"
        if keyword.iskeyword(base) or base in CONTEXT_FIELDS:
            base += "_"
        candidate, n = base, 1
        while candidate in self.taken:
            n += 1
            candidate = f"{base}_{n}"
        self.taken.add(candidate)
        return candidate


@dataclass
class Source:
    """Where one Argo parameter's value comes from."""

    dependency: str  # the Argo dependency name
    path: str | None  # JSONPath or $event attribute; None when only ``value`` gives it
    value: str | None
    raw: bool
    operation: str
    hint: str  # what to name the flow parameter after


@dataclass
class Param:
    """One flow parameter: its annotation, default, and the mapping that fills it."""

    name: str
    annotation: str
    default: Any
    dependency: str | None  # tripwire dependency name, when an event fills it
    source: str | None


def read_source(raw: object, where: str, context: ParamContext) -> Source | None:
    """The source of one Argo parameter, or None when it can never change its ``dest``.

    Raises:
        Untranslatable: the source is a Go template beyond ``{{ .Input.a.b }}``, a context
            key tripwire events do not carry, or the whole event.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("src"), dict):
        raise Untranslatable(f"{where} has no src")
    src = raw["src"]
    unknown = sorted(set(src) - set(_SRC_KEYS))
    if unknown:
        raise Untranslatable(f"{where}.src.{unknown[0]} is not a parameter source Argo knows")
    operation = str(raw.get("operation") or "")
    if operation not in ("", "overwrite", "append", "prepend"):
        raise Untranslatable(f"{where}.operation {operation!r} is not one Argo knows")
    dependency = str(src.get("dependencyName") or "")
    value = None if src.get("value") is None else str(src["value"])
    if dependency not in context.dependencies:
        if value is None:
            context.findings.append(
                Finding(
                    "dropped",
                    where,
                    f"reads {dependency!r}, which this trigger does not "
                    "wait for: Argo leaves its dest as it is",
                )
            )
            return None
        return Source(dependency, None, value, False, operation, dependency)
    path, hint = _path(src, where, context, dependency)
    if path is None and value is None:
        raise Untranslatable(f"{where} passes the whole event, which tripwire has no form for")
    return Source(dependency, path, value, bool(src.get("useRawData")), operation, hint)


def _path(
    src: dict[str, Any], where: str, context: ParamContext, dependency: str
) -> tuple[str | None, str]:
    if src.get("contextTemplate"):
        raise Untranslatable(f"{where}.src.contextTemplate (a Go template) is not translated")
    key, template = src.get("dataKey"), src.get("dataTemplate")
    if template:
        simple = _SIMPLE_TEMPLATE.fullmatch(str(template).strip())
        if simple is None or (key and key != simple.group(1)[1:]):
            raise Untranslatable(
                f"{where}.src.dataTemplate {template!r} is a Go template beyond "
                "{{ .Input.a.b }}; tripwire maps a field, not a template"
            )
        key = simple.group(1)[1:]
        context.findings.append(
            Finding(
                "differs",
                where,
                f"dataTemplate is read as dataKey {key!r}: Go would "
                "print a number like 1e+06, and an empty value would fall back to value",
            )
        )
    if key:
        return jsonpath_of(str(key), context.root), str(key).rsplit(".", 1)[-1]
    context_key = src.get("contextKey")
    if not context_key:
        return None, dependency
    if context_key == "subject":
        if context.event_names[dependency] != context.subjects[dependency]:
            raise Untranslatable(
                f"{where}.src.contextKey subject is the eventName, which is not the tripwire "
                "event name with --prefix-source"
            )
        return "$event.name", "subject"
    if context_key in _CONTEXT_KEYS:
        if context_key == "time":
            context.findings.append(
                Finding(
                    "differs",
                    where,
                    "contextKey time is the event time as ISO 8601 "
                    "(+00:00), where Go writes RFC 3339 (Z)",
                )
            )
        return _CONTEXT_KEYS[context_key], str(context_key)
    raise Untranslatable(
        f"{where}.src.contextKey {context_key!r} is Argo event-source metadata that tripwire "
        "events do not carry"
    )


@dataclass
class Binding:
    """What one Argo parameter puts at its dest: ``literal`` text, or the flow parameter
    ``param`` between the ``before`` and ``after`` text (append and prepend)."""

    param: Param | None
    literal: str = ""
    before: str = ""
    after: str = ""

    def template(self) -> str:
        """The dest's value as a target template (placeholders in braces)."""
        if self.param is None:
            return escape(self.literal)
        return f"{escape(self.before)}{{{self.param.name}}}{escape(self.after)}"


def bind(
    source: Source,
    context: ParamContext,
    current: str | None,
    *,
    annotation: str,
    where: str,
    name: str | None = None,
) -> Binding:
    """The binding of ``source`` to a dest whose value in the template is ``current``
    (None: the template has none there); the flow parameter is named after ``name`` (what
    the dest is called), else after the source's key."""
    kept = current or ""
    before = kept if source.operation == "append" else ""
    after = kept if source.operation == "prepend" else ""
    if source.path is None:
        assert source.value is not None
        return Binding(None, literal=before + source.value + after)
    if source.value is not None:
        default: Any = source.value
    elif context.always(source.dependency):
        default = REQUIRED
    else:
        default = kept if source.operation in ("", "overwrite") else ""
        left_out = " (Argo leaves it out)" if current is None else ""
        context.findings.append(
            Finding(
                "differs",
                where,
                f"when {source.dependency!r} takes no part, the dest keeps "
                f"{default!r}{left_out}; when its event lacks the key, Argo fails the "
                f"trigger where tripwire runs with {default!r}",
            )
        )
    param = Param(
        name=context.name(name or source.hint),
        annotation=annotation,
        default=default,
        dependency=context.dependencies[source.dependency],
        source=source.path,
    )
    return Binding(param, before=before, after=after)


def escape(text: str) -> str:
    """``text`` as literal template text (braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")

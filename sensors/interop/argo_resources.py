"""What every Argo trigger action is read with: its parameters, the Kubernetes object it
carries, its namespace and labels; and the :class:`TargetPlan` a target module makes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sensors.interop.argo_params import Binding, Param, ParamContext, Source, read_source
from sensors.interop.findings import Finding, Untranslatable
from sensors.interop.kube_yaml import load
from triggers.errors import DeclarationError

__all__ = ["NAMES", "TargetPlan", "TargetReader", "mapping", "namespace", "text"]

_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
NAMES = ("metadata.name", "metadata.generateName")
"""Dests that name the created object; tripwire names it after the run."""


@dataclass
class TargetPlan:
    """Where a flow's runs go, and what the flow declares and does for it."""

    url: str | None
    options: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)  # @trigger keywords
    params: list[Param] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)

    def add(self, binding: Binding) -> None:
        if binding.param is not None:
            self.params.append(binding.param)


class TargetReader:
    """Reads the parts of one trigger's action, reporting what it leaves out."""

    def __init__(
        self,
        context: ParamContext,
        trigger: dict[str, Any],
        *,
        sensor: str,
        namespace: str | None,
    ) -> None:
        self.context, self.trigger = context, trigger
        self.sensor, self.namespace = sensor, namespace
        self.where = f"trigger {context.trigger!r}"

    def note(self, kind: Literal["dropped", "differs"], where: str, text: str) -> None:
        self.context.findings.append(Finding(kind, where, text))

    @staticmethod
    def only(raw: object, allowed: tuple[str, ...], where: str, why: str) -> dict[str, Any]:
        """``raw`` as a mapping that sets nothing but ``allowed``, else refused with ``why``."""
        if not isinstance(raw, dict):
            raise DeclarationError(f"{where} must be a mapping.")
        extra = sorted(
            k for k, v in raw.items() if k not in allowed and v not in (None, "", [], {})
        )
        if extra:
            raise Untranslatable(f"{where} sets {', '.join(extra)}; {why}")
        return raw

    def sources(self, raw: object, where: str) -> list[tuple[str, str, Source]]:
        """Each parameter's dest, where it is declared, and its source; parameters that can
        never change their dest are left out (and reported)."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise DeclarationError(f"{where} must be a list.")
        found = []
        for n, item in enumerate(raw):
            source = read_source(item, f"{where}[{n}]", self.context)
            if source is not None:
                found.append((str(item.get("dest") or ""), f"{where}[{n}]", source))
        dests = [dest for dest, _, _ in found]
        twice = sorted({d for d in dests if dests.count(d) > 1})
        if twice:
            raise Untranslatable(f"{where} sets {twice[0]} twice")
        return found

    @staticmethod
    def resource(spec: dict[str, Any], where: str) -> dict[str, Any]:
        """The Kubernetes object an action creates, written in the manifest."""
        source = spec.get("source")
        if not isinstance(source, dict):
            raise DeclarationError(f"{where}.source is missing; Argo refuses the trigger.")
        if source.get("resource") is not None:
            resource = source["resource"]
        elif source.get("inline") is not None:
            resource = load(str(source["inline"]), f"{where}.source.inline")
        else:
            kinds = sorted(source) or ["nothing"]
            raise Untranslatable(
                f"{where}.source reads the resource from {kinds[0]}; put it in the "
                "manifest under source.resource"
            )
        if not isinstance(resource, dict):
            raise DeclarationError(f"{where}.source.resource must be a Kubernetes object.")
        return resource

    def metadata(self, resource: dict[str, Any], where: str, target: str) -> dict[str, Any]:
        """The object's metadata; its name and annotations are reported as dropped."""
        metadata = self.only(
            resource.get("metadata") or {},
            ("name", "generateName", "namespace", "labels", "annotations"),
            f"{where}.metadata",
            f"{target} sets labels only",
        )
        named = metadata.get("generateName") or metadata.get("name")
        if named:
            self.note("dropped", f"{where}.metadata", f"{named!r}: tripwire names it after the run")
        if metadata.get("annotations"):
            self.note("dropped", f"{where}.metadata.annotations", "tripwire sets labels only")
        return metadata

    def namespace_of(self, metadata: dict[str, Any], where: str) -> str:
        if metadata.get("namespace"):
            return namespace(metadata["namespace"], f"{where}.metadata.namespace")
        if not self.namespace:
            raise Untranslatable(
                "its resource has no namespace: set metadata.namespace on it or on the "
                "Sensor, or pass --namespace"
            )
        return self.namespace

    def labels(self, places: dict[str, object]) -> dict[str, str]:
        """The object's labels (by where they are written), with those Argo adds that are
        the same for every run."""
        labels = {
            "events.argoproj.io/sensor": self.sensor,
            "events.argoproj.io/trigger": self.context.trigger,
        }
        for where, raw in places.items():
            for key, value in mapping(raw, where).items():
                if labels.get(key, value) != value:
                    raise Untranslatable(f"label {key} has two values, {labels[key]!r}, {value!r}")
                labels[str(key)] = str(value)
        return labels


def namespace(raw: object, where: str) -> str:
    """``raw`` as a Kubernetes namespace name.

    Raises:
        DeclarationError: not one (a DNS label), which Kubernetes refuses.
    """
    if not isinstance(raw, str) or not _NAMESPACE.fullmatch(raw):
        raise DeclarationError(
            f"{where} is {raw!r}, not a namespace: Kubernetes takes up to 63 lower-case "
            "letters, digits and '-', starting and ending with a letter or digit."
        )
    return raw


def mapping(raw: object, where: str) -> dict[str, Any]:
    """``raw`` as a mapping, nothing (None) as an empty one.

    Raises:
        DeclarationError: ``raw`` is something else, which Argo refuses.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DeclarationError(f"{where} must be a mapping of keys to values, not {raw!r}.")
    return raw


def text(value: object) -> str:
    """A manifest value as the text Argo passes (JSON for what is not a string)."""
    return value if isinstance(value, str) else json.dumps(value)

"""An Argo Events ``Sensor`` manifest as a tripwire flow file: one flow per trigger.

- **Event names.** A dependency waits for the event named by its ``eventName`` (what a
  webhook source's endpoint or a Kafka source's entry is called), or, with
  ``prefix_source``, ``EVENTSOURCE.EVENTNAME``. Two dependencies on one event name from two
  event sources need the prefix, or they would merge.
- **Dependencies** keep their names (``-`` read as ``_``, as Argo's conditions do); a
  trigger waits for the dependencies its ``conditions`` name, or for all of the Sensor's.
- **Filters, parameters, targets**: :mod:`~sensors.interop.argo_filters`,
  :mod:`~sensors.interop.argo_params`, :mod:`~sensors.interop.argo_targets`.
- **Windows.** Argo holds a dependency's event until its trigger fires; tripwire holds
  events for ``within``, so a trigger of several dependencies gets ``within`` (the
  ``--within`` option) and says so.

A trigger is translated exactly or refused with the reasons; settings that change nothing
but have no equivalent are dropped and listed. The generated file is loaded with the SDK
before it is returned, so what it declares is what tripwire will deploy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sensors.interop.argo_filters import dependency_filters
from sensors.interop.argo_params import ParamContext
from sensors.interop.argo_resources import mapping, namespace
from sensors.interop.argo_targets import BODY_NAMES, KINDS, target_of
from sensors.interop.findings import Finding, Untranslatable
from sensors.interop.flowfile import MODULE_NAMES, FlowPlan, load_flows, render
from sensors.interop.kube_yaml import check_json, load_all
from sensors.interop.pysource import identifier
from triggers.conditions import parse_condition
from triggers.envelope import validate_event_name
from triggers.error_text import exception_text
from triggers.errors import DeclarationError, PublishError
from triggers.normalize import did_you_mean
from triggers.spec import FlowSpec, parse_duration

__all__ = ["Options", "Translation", "read_manifest", "translate"]

_API = "argoproj.io/v1alpha1"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEPENDENCY_KEYS = ("name", "eventSourceName", "eventName", "filters", "transform",
                    "filtersLogicalOperator")  # fmt: skip
_TRIGGER_KEYS = ("template", "parameters", "policy", "retryStrategy", "rateLimit",
                 "atLeastOnce", "dlqTrigger")  # fmt: skip
_TEMPLATE_KEYS = ("name", "conditions", "conditionsReset", *KINDS)
_SENSOR_SETTINGS = {
    "template": "the Sensor's pod; tripwire workers run the flows",
    "eventBusName": "tripwire's events topic is the bus",
    "replicas": "tripwire scales by adding workers",
    "revisionHistoryLimit": "tripwire keeps flow revisions in its store",
    "loggingFields": "tripwire workers log in their own format",
    "errorOnFailedRound": "a failed run is a failed run in tripwire",
}
_RATE_UNITS = {"Second": "s", "Minute": "m", "Hour": "h"}
# Names a flow or a parameter must not take: the file's and the flow bodies' own.
_RESERVED = MODULE_NAMES | BODY_NAMES


@dataclass(frozen=True)
class Options:
    """How to translate: event names, where the payload starts, windows, namespace."""

    prefix_source: bool = False
    payload_root: str = "body"
    within: str = "1h"
    namespace: str | None = None


@dataclass
class Translation:
    """The flow file (None when no trigger translated), its flows and the findings."""

    source: str | None
    flows: list[FlowSpec]
    findings: list[Finding] = field(default_factory=list)

    @property
    def refused(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "refused"]

    def ordered(self) -> list[Finding]:
        """The findings, refusals first, then what was dropped, then the differences."""
        rank = {"refused": 0, "dropped": 1, "differs": 2}
        return sorted(self.findings, key=lambda f: rank[f.kind])


@dataclass
class _Dependency:
    name: str  # Argo's
    dep: str  # tripwire's: the name in conditions
    event: str  # the tripwire event name
    subject: str  # Argo's eventName
    source: str  # Argo's eventSourceName
    filters: list[dict[str, Any]] = field(default_factory=list)
    operator: str = "and"
    problem: str | None = None


def read_manifest(text: str, origin: str) -> dict[str, Any]:
    """The Sensor in a YAML text (of one or more documents), read as Kubernetes reads it
    (:mod:`~sensors.interop.kube_yaml`).

    Raises:
        DeclarationError: not YAML, not exactly one Sensor, or a Sensor that is not JSON;
            the message says which.
    """
    documents = [d for d in load_all(text, origin) if d is not None]
    sensors = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Sensor"]
    if len(sensors) != 1:
        kinds = [d.get("kind") if isinstance(d, dict) else type(d).__name__ for d in documents]
        raise DeclarationError(
            f"{origin} holds {len(sensors)} Sensors (kinds: {kinds or 'none'}); give a file "
            "with exactly one `kind: Sensor` manifest (apiVersion argoproj.io/v1alpha1)."
        )
    check_json(sensors[0], origin)
    return sensors[0]


def translate(manifest: dict[str, Any], *, origin: str, options: Options) -> Translation:
    """The flow file of a Sensor manifest.

    Raises:
        DeclarationError: the manifest is not a Sensor Argo would accept (missing or
            malformed fields); the message names the field and what to write.
    """
    if manifest.get("apiVersion") != _API:
        raise DeclarationError(
            f"{origin}: apiVersion is {manifest.get('apiVersion')!r}; a Sensor is {_API}."
        )
    parse_duration(options.within, what="--within")
    metadata = manifest.get("metadata")
    spec = manifest.get("spec")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise DeclarationError(f"{origin}: metadata.name is missing; name the Sensor.")
    if not isinstance(spec, dict):
        raise DeclarationError(
            f"{origin}: spec is missing; a Sensor has spec.dependencies and spec.triggers."
        )
    reader = _Reader(str(metadata["name"]), metadata.get("namespace"), origin, options)
    reader.settings(spec)
    reader.dependencies(spec.get("dependencies"))
    plans = reader.triggers(spec.get("triggers"))
    title = f"Flows of the Argo Events Sensor {reader.sensor!r}."
    origin_line = f"Written from {origin} by `tripwire import argo-sensor`."
    if not plans:
        return Translation(None, [], reader.findings)
    source = render(plans, reader.findings, title, origin_line)
    return Translation(source, load_flows(source), reader.findings)


class _Reader:
    def __init__(self, sensor: str, written: object, origin: str, options: Options) -> None:
        """``written``: the Sensor's metadata.namespace."""
        self.sensor, self.origin, self.options = sensor, origin, options
        if options.namespace:
            self.namespace: str | None = namespace(options.namespace, "--namespace")
        elif written:
            self.namespace = namespace(written, f"{origin}: metadata.namespace")
        else:
            self.namespace = None
        self.findings: list[Finding] = []
        self.deps: dict[str, _Dependency] = {}
        self.taken: set[str] = set(_RESERVED)

    def _unknown(self, raw: dict[str, Any], known: tuple[str, ...], where: str) -> None:
        for key in raw:
            if key not in known:
                self.findings.append(
                    Finding(
                        "dropped",
                        f"{where}.{key}",
                        "not a field of Argo's Sensor"
                        f"{did_you_mean(str(key), known)}; Kubernetes drops it, and so does this",
                    )
                )

    def settings(self, spec: dict[str, Any]) -> None:
        for key, why in _SENSOR_SETTINGS.items():
            if spec.get(key) not in (None, "", {}, [], False):
                self.findings.append(Finding("dropped", f"spec.{key}", why))
        self._unknown(spec, ("dependencies", "triggers", *_SENSOR_SETTINGS), "spec")

    def dependencies(self, raw: object) -> None:
        if not isinstance(raw, list) or not raw:
            raise DeclarationError(
                f"{self.origin}: spec.dependencies must list at least one "
                "dependency (name, eventSourceName, eventName)."
            )
        for n, item in enumerate(raw):
            where = f"spec.dependencies[{n}]"
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) and item[k]
                for k in ("name", "eventSourceName", "eventName")
            ):
                raise DeclarationError(
                    f"{self.origin}: {where} needs name, eventSourceName and "
                    "eventName, each a non-empty string."
                )
            self._unknown(item, _DEPENDENCY_KEYS, where)
            self._dependency(item, f"dependency {item['name']!r}")
        for dep in self.deps.values():
            clash = [
                d.name
                for d in self.deps.values()
                if d.event == dep.event and d.source != dep.source
            ]
            if clash and not dep.problem:
                dep.problem = (
                    f"it and {clash[0]!r} wait for {dep.event!r} from two event "
                    "sources; pass --prefix-source to tell them apart"
                )

    def _dependency(self, item: dict[str, Any], where: str) -> None:
        name, source, event = item["name"], item["eventSourceName"], item["eventName"]
        dep = name.replace("-", "_")  # as Argo reads names in conditions
        other = next((d for d in self.deps.values() if d.dep == dep), None)
        if other is not None:
            same = (
                f"two dependencies are named {name!r}"
                if other.name == name
                else (
                    f"dependencies {other.name!r} and {name!r} are one name in conditions (Argo "
                    "reads - as _)"
                )
            )
            raise DeclarationError(f"{self.origin}: {same}; rename one.")
        wanted = f"{source}.{event}" if self.options.prefix_source else event
        found = _Dependency(name, dep, wanted, event, source)
        self.deps[name] = found
        try:
            if not _IDENTIFIER.fullmatch(dep):
                raise Untranslatable("its name has characters conditions cannot name")
            validate_event_name(wanted)
            if item.get("transform"):
                raise Untranslatable("its transform (jq or a script) rewrites events first")
            found.filters, found.operator, notes = dependency_filters(
                item, root=self.options.payload_root, where=where
            )
            self.findings += notes
        except (Untranslatable, PublishError) as exc:
            found.problem = str(exc)

    def triggers(self, raw: object) -> list[FlowPlan]:
        if not isinstance(raw, list) or not raw:
            raise DeclarationError(f"{self.origin}: spec.triggers must list at least one trigger.")
        plans: list[FlowPlan] = []
        names: set[str] = set()
        for n, item in enumerate(raw):
            template = item.get("template") if isinstance(item, dict) else None
            if not isinstance(template, dict) or not template.get("name"):
                raise DeclarationError(
                    f"{self.origin}: spec.triggers[{n}].template.name is "
                    "missing; every trigger has a template with a name."
                )
            name = str(template["name"])
            if name in names:
                raise DeclarationError(f"{self.origin}: two triggers are named {name!r}.")
            names.add(name)
            self._unknown(item, _TRIGGER_KEYS, f"trigger {name!r}")
            self._unknown(template, _TEMPLATE_KEYS, f"trigger {name!r}.template")
            before = len(self.findings)
            try:
                plans.append(self._trigger(item, template, name))
            except Untranslatable as exc:
                del self.findings[before:]  # the notes of a trigger that is not written
                self.findings.append(Finding("refused", f"trigger {name!r}", str(exc)))
        return self._loadable(plans)

    def _loadable(self, plans: list[FlowPlan]) -> list[FlowPlan]:
        """The plans whose flows the SDK accepts; the others are refused with its reason."""
        kept = []
        for plan in plans:
            try:
                load_flows(render([plan], [], plan.doc, ""))
                kept.append(plan)
            except DeclarationError as exc:  # located in a temporary file: say where in the Sensor
                self.findings.append(Finding("refused", plan.where, exc.reason or str(exc)))
            except Exception as exc:  # the file is ours: report the bug, write the others
                self.findings.append(
                    Finding(
                        "refused",
                        plan.where,
                        f"its flow does not load ({exception_text(exc)}); this is a bug in "
                        "tripwire import, please report it",
                    )
                )
        return kept

    def _trigger(self, item: dict[str, Any], template: dict[str, Any], name: str) -> FlowPlan:
        conditions = template.get("conditions")
        if conditions:
            text = " ".join(str(conditions).replace("-", "_").split())
            used = [d for d in self.deps.values()
                    if re.search(rf"(?<![\w.\-]){re.escape(d.dep)}(?![\w.\-])", text)]  # fmt: skip
        else:
            text, used = None, list(self.deps.values())
        for dep in used:
            if dep.problem:
                raise Untranslatable(f"dependency {dep.name!r}: {dep.problem}")
        known = [d.dep for d in self.deps.values()]
        try:
            condition = parse_condition(text or " && ".join(d.dep for d in used), known)
        except DeclarationError as exc:
            raise Untranslatable(f"{exc} Argo cannot start this trigger either") from None
        context = ParamContext(
            trigger=name,
            dependencies={d.name: d.dep for d in used},
            event_names={d.name: d.event for d in used},
            subjects={d.name: d.subject for d in used},
            condition=condition,
            root=self.options.payload_root,
            taken=set(_RESERVED),
        )
        if item.get("parameters"):
            raise Untranslatable("its parameters rewrite the trigger's own template")
        plan = target_of(template, item, context, sensor=self.sensor, namespace=self.namespace)
        self.findings += context.findings
        policy = {**plan.policy, **self._policy(item, template, name, "http" in template)}
        events = [self._event(d, plan.params) for d in used]
        declared: dict[str, Any] = {"events": events} if len(events) > 1 else {"event": events[0]}
        if text:
            declared["conditions"] = text
        if len(used) > 1:
            declared["within"] = self.options.within
            self.findings.append(
                Finding(
                    "differs",
                    f"trigger {name!r}",
                    "Argo holds each dependency's latest event until "
                    f"the trigger fires; tripwire holds it for within={self.options.within!r} "
                    "(--within)",
                )
            )
        declared |= policy
        return FlowPlan(
            name=identifier(name, self.taken),
            where=f"trigger {name!r}",
            doc=f"Argo Events trigger {name!r} of Sensor {self.sensor!r}.",
            trigger=declared,
            target=(plan.url, plan.options) if plan.url else None,
            params=plan.params,
            body=plan.body,
            imports=plan.imports,
        )

    def _event(self, dep: _Dependency, params: list[Any]) -> dict[str, Any]:
        event: dict[str, Any] = {
            "name": dep.event,
            "dep": dep.dep,
            # Explicit, even when empty: Argo fills nothing by matching field names.
            "parameters": {p.name: p.source for p in params if p.dependency == dep.dep},
        }
        if dep.filters:
            event["filters"] = dep.filters
            if dep.operator == "or":
                event["filters_operator"] = "or"
        return event

    def _policy(
        self, item: dict[str, Any], template: dict[str, Any], name: str, http: bool
    ) -> dict[str, Any]:
        where = f"trigger {name!r}"
        policy: dict[str, Any] = {}
        limit = mapping(item.get("rateLimit"), f"{where}.rateLimit")
        if limit.get("requestsPerUnit"):
            unit = _RATE_UNITS.get(str(limit.get("unit") or "Second"))
            count = limit["requestsPerUnit"]
            if unit is None or not isinstance(count, int) or count < 1:
                raise DeclarationError(
                    f"{self.origin}: {where}.rateLimit is not a count per Second, Minute or Hour."
                )
            policy["rate_limit"] = f"{count}/{unit}"
            self.findings.append(
                Finding(
                    "differs",
                    f"{where}.rateLimit",
                    f"Argo spaces fires evenly ({count} per {unit}); "
                    "tripwire starts up to that many in any such period, and queues the rest",
                )
            )
        dropped = {
            "retryStrategy": None
            if http
            else "tripwire does not retry creating the resource; a failed create fails the run",
            "policy": None
            if http and not mapping(item.get("policy"), f"{where}.policy").get("k8s")
            else "tripwire follows the Job or Workflow to its end itself",
            "atLeastOnce": "tripwire launches each fire exactly once",
            "dlqTrigger": "a flow with @trigger_on_finish(on=['FAILED']) can act on failed runs",
        }
        for key, why in dropped.items():
            if why and item.get(key):
                self.findings.append(Finding("dropped", f"{where}.{key}", why))
        if template.get("conditionsReset"):
            self.findings.append(
                Finding(
                    "dropped",
                    f"{where}.conditionsReset",
                    "tripwire lets held events go after "
                    "within (--within) rather than at a cron time",
                )
            )
        return policy

"""A deployed sensor: one trigger of one flow, compiled for the engine."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from triggers.params import ParameterSchema
from triggers.spec import EventDependency, FlowSpec, TriggerSpec

__all__ = ["Sensor", "build_sensors", "run_name_for"]

_SLUG = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, eq=False)
class Sensor:
    """What the correlator needs to know about one trigger of one deployed flow.

    ``deployed_at`` bounds what the sensor sees: events that reached the broker
    before it was deployed never fire it, whatever offset a consumer starts from.
    """

    project: str
    domain: str
    flow: FlowSpec
    trigger: TriggerSpec
    deployed_at: datetime
    parameter_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameter_names", tuple(p.name for p in self.flow.parameters))

    @property
    def id(self) -> str:
        """Unique within a project and domain: ``flow.trigger``."""
        return f"{self.flow.name}.{self.trigger.name}"

    @property
    def dependencies(self) -> tuple[EventDependency, ...]:
        return self.trigger.dependencies

    @cached_property
    def schema(self) -> ParameterSchema:
        return ParameterSchema(self.flow.parameters)

    def run_name(self, event_ids: Iterable[str]) -> str:
        return run_name_for(self.project, self.domain, self.id, self.flow.name, event_ids)


def run_name_for(
    project: str, domain: str, sensor_id: str, flow: str, event_ids: Iterable[str]
) -> str:
    """Deterministic run name: the same sensor and events always give the same name.

    This is what makes launches exactly-once: replays and redeliveries produce the
    same name, and the run store accepts a name only once. The result is a valid
    Kubernetes object name (lowercase, digits and '-', at most 63 characters).
    """
    material = "\x1f".join([project, domain, sensor_id, *sorted(event_ids)])
    digest = hashlib.sha256(material.encode()).hexdigest()[:20]
    slug = _SLUG.sub("-", flow.lower().replace("_", "-")).strip("-")[:40] or "run"
    return f"{slug}-{digest}"


def build_sensors(
    flows: Iterable[FlowSpec], *, project: str, domain: str, deployed_at: datetime
) -> list[Sensor]:
    """One sensor per trigger of each flow."""
    return [
        Sensor(project=project, domain=domain, flow=flow, trigger=trig, deployed_at=deployed_at)
        for flow in flows
        for trig in flow.triggers
    ]

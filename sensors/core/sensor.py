"""A deployed sensor: one trigger of one flow, compiled for the engine."""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from triggers.params import ParameterSchema
from triggers.spec import EventDependency, FlowSpec, TriggerSpec

__all__ = ["Sensor", "build_sensors", "run_policy", "slug", "target_fields"]

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
    revision: int = 1
    """The flow revision that last changed this trigger."""
    parameter_names: tuple[str, ...] = field(init=False)
    dependencies: tuple[EventDependency, ...] = field(init=False)
    id: str = field(init=False)
    """Unique within a project and domain: ``flow.trigger``."""
    schema: ParameterSchema = field(init=False, repr=False)
    request_head: bytes = field(init=False, repr=False)
    """The fields of a run request (``NewRun``) that are the same for all its fires, as
    a JSON object without its closing brace: encoded once, not for every fire."""
    version: int = field(init=False, repr=False)
    """A fingerprint of what the sensor decides by (its trigger, flow and deployment
    time): state gathered under another version is not restored."""
    _slug: str = field(init=False, repr=False)
    _name_prefix: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Computed when the sensor is built, not on its first event: the hot path reads
        # them for every event and fire, and 100,000 first events should not pay.
        object.__setattr__(self, "parameter_names", tuple(p.name for p in self.flow.parameters))
        object.__setattr__(self, "dependencies", self.trigger.dependencies)
        object.__setattr__(self, "id", f"{self.flow.name}.{self.trigger.name}")
        object.__setattr__(self, "schema", ParameterSchema(self.flow.parameters))
        object.__setattr__(self, "request_head", msgspec.json.encode(self._request_fields())[:-1])
        fingerprint = b"\x1f".join(
            [
                self.deployed_at.isoformat().encode(),
                self.trigger.model_dump_json().encode(),
                self.flow.model_dump_json().encode(),
            ]
        )
        object.__setattr__(self, "version", zlib.crc32(fingerprint))
        object.__setattr__(self, "_slug", slug(self.flow.name))
        prefix = "\x1f".join([self.project, self.domain, self.id, ""])
        object.__setattr__(self, "_name_prefix", prefix.encode())

    def _request_fields(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "domain": self.domain,
            "flow": self.flow.name,
            "sensor_id": self.id,
            "trigger": self.trigger.name,
            **target_fields(self.flow, self.trigger),
            "entrypoint": self.flow.entrypoint.model_dump(),
            **run_policy(self.trigger),
        }

    @property
    def stateful(self) -> bool:
        """Whether it needs the correlator: several events, a kind other than all-of, or
        debounce. A stateless sensor fires on each matching event where it is routed."""
        trigger = self.trigger
        if trigger.schedule is not None:
            return False  # the scheduler's, not the correlator's
        return len(self.dependencies) > 1 or trigger.kind != "all" or trigger.debounce is not None

    def run_name(self, event_ids: Iterable[str]) -> str:
        """Deterministic run name: the same sensor and events always give the same name.

        This is what makes launches exactly-once: replays and redeliveries produce the
        same name, and the run store accepts a name only once. The result is a valid
        Kubernetes object name (lowercase, digits and '-', at most 63 characters).
        """
        material = self._name_prefix + "\x1f".join(sorted(event_ids)).encode()
        return f"{self._slug}-{hashlib.sha256(material).hexdigest()[:20]}"


def target_fields(flow: FlowSpec, trigger: TriggerSpec | None = None) -> dict[str, Any]:
    """Where a trigger's runs execute (its own target, else its flow's), as the fields of
    a run request."""
    if trigger is not None and trigger.target is not None:
        return {"target": trigger.target, "target_options": trigger.target_options or None}
    return {"target": flow.target, "target_options": flow.target_options or None}


def run_policy(trigger: TriggerSpec | None) -> dict[str, Any]:
    """A trigger's retries, backoff, timeout and limits, as the fields of a run request."""
    if trigger is None:
        return {}
    timeout, rate = trigger.timeout, trigger.rate_limit
    return {
        "retries": trigger.retries,
        "retry_backoff_seconds": trigger.retry_backoff.total_seconds(),
        "timeout_seconds": timeout.total_seconds() if timeout else None,
        "rate_limit_count": rate.count if rate else None,
        "rate_limit_seconds": rate.per.total_seconds() if rate else None,
        "max_concurrency": trigger.max_concurrency,
    }


def slug(flow: str) -> str:
    """A flow name as the start of a run name: lowercase letters, digits and '-'."""
    return _SLUG.sub("-", flow.lower().replace("_", "-")).strip("-")[:40] or "run"


def build_sensors(
    flows: Iterable[FlowSpec], *, project: str, domain: str, deployed_at: datetime
) -> list[Sensor]:
    """One sensor per trigger of each flow."""
    return [
        Sensor(project=project, domain=domain, flow=flow, trigger=trig, deployed_at=deployed_at)
        for flow in flows
        for trig in flow.triggers
    ]

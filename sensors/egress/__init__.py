"""Egress: run lifecycle events forwarded to external pub/sub, after Flyte's cloud events.

Each sink implements :class:`Sink` and is chosen by the ``cloud_events.type``
setting (``kafka``, ``aws`` for SNS or SQS, ``gcp`` for Pub/Sub); optional
clients are imported lazily, and a missing one names its pip extra. The events
are the CloudEvents already on ``tripwire.run-events``
(:mod:`sensors.runs.lifecycle`): Kafka gets them as they are (binary mode);
SNS, SQS and Pub/Sub get CloudEvents JSON (structured mode), with ``data`` as
JSON (not protobuf). :mod:`sensors.egress.stage` reads the topic and delivers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.structs import ConsumerRecord

from triggers.cloud_events import CloudEventsConfig
from triggers.errors import ConfigurationError
from triggers.settings import Settings

__all__ = ["Outgoing", "Sink", "kind_of", "outgoing", "sink_for"]

_KINDS = {
    "com.tripwire.resource.workflow": "workflow",
    "com.tripwire.resource.node": "node",
    "com.tripwire.resource.task": "task",
}


@dataclass(frozen=True)
class Outgoing:
    """One lifecycle event on its way out: the Kafka record, and its CloudEvents JSON."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    structured: bytes  # application/cloudevents+json
    id: str


class Sink(Protocol):
    """Delivers events to one external destination; raises if any was not accepted."""

    async def send(self, events: Sequence[Outgoing]) -> None: ...

    async def close(self) -> None: ...


def kind_of(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """'workflow', 'node' or 'task' for a lifecycle record; None for anything else."""
    for key, value in record.headers or ():
        if key == "ce_type":
            return _KINDS.get(value.decode(errors="replace"))
    return None


def outgoing(record: ConsumerRecord[bytes, bytes], source: str | None) -> Outgoing:
    """A lifecycle record as it leaves: ``source`` replaced when the deployment sets one."""
    headers = [(k, v) for k, v in record.headers or ()]
    if source:
        headers = [(k, source.encode() if k == "ce_source" else v) for k, v in headers]
    attributes = {k.removeprefix("ce_"): v.decode() for k, v in headers if k.startswith("ce_")}
    event: dict[str, Any] = {**attributes, "datacontenttype": "application/json"}
    event["data"] = json.loads(record.value or b"null")
    return Outgoing(
        key=record.key or b"",
        value=record.value or b"",
        headers=headers,
        structured=json.dumps(event).encode(),
        id=attributes.get("id", ""),
    )


def sink_for(config: CloudEventsConfig, settings: Settings) -> Sink:
    """The sink of a ``cloud_events`` config.

    Raises:
        ConfigurationError: the sink's client library is not installed.
    """
    if config.type == "kafka":
        from sensors.egress.kafka import KafkaSink

        return KafkaSink(config, settings)
    if config.type == "aws":
        from sensors.egress.aws import aws_sink

        return aws_sink(config)
    if config.type == "gcp":
        from sensors.egress.gcp import PubSubSink

        return PubSubSink(config)
    raise ConfigurationError(f"cloud_events.type={config.type!r} is not kafka, aws or gcp")

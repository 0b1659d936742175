"""What every egress sink shares: the :class:`Sink` protocol, and a lifecycle record as
it leaves (:class:`Outgoing`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.structs import ConsumerRecord

__all__ = ["Outgoing", "Sink", "kind_of", "outgoing"]

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

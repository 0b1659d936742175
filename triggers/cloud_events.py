"""The ``cloud_events`` block: where run lifecycle events go beyond tripwire, as Flyte has it.

Either Flyte's nested shape::

    cloud_events:
      enable: true
      type: aws                      # kafka | aws | gcp
      aws: {region: us-east-1}
      eventsPublisher:
        topicName: arn:aws:sns:us-east-1:123456789012:tripwire-events
        eventTypes: [all]            # all | workflow | node | task

or the same keys flat (``topicName``, ``region``, ``events``). It comes from
``TRIPWIRE_CLOUD_EVENTS`` (JSON) or a YAML file named by
``TRIPWIRE_CLOUD_EVENTS_FILE``, and is checked when the settings load: a bad key
fails at start, named, not when the first event goes out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["EVENT_KINDS", "CloudEventsConfig", "load_cloud_events"]

EVENT_KINDS = ("all", "workflow", "node", "task")


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Publisher(_Block):
    topicName: str | None = Field(None, description="Topic, queue or ARN the events go to.")
    eventTypes: list[Literal["all", "workflow", "node", "task"]] | None = None


class _Aws(_Block):
    region: str | None = None


class _Gcp(_Block):
    projectId: str | None = None


class _Kafka(_Block):
    brokers: list[str] | str | None = Field(
        None, description="Bootstrap servers of the cluster to publish to; default tripwire's."
    )


class CloudEventsConfig(_Block):
    """Egress of run lifecycle events: disabled unless ``enable``."""

    enable: bool = False
    type: Literal["kafka", "aws", "gcp"] | None = Field(
        None, description="kafka: a topic; aws: an SNS topic or SQS queue; gcp: Pub/Sub."
    )
    topicName: str | None = None
    region: str | None = None
    events: list[Literal["all", "workflow", "node", "task"]] | None = None
    source: str | None = Field(
        None, description="The CloudEvent `source` of this deployment; default the events' own."
    )
    eventsPublisher: _Publisher = Field(default_factory=_Publisher)
    aws: _Aws = Field(default_factory=_Aws)
    gcp: _Gcp = Field(default_factory=_Gcp)
    kafka: _Kafka = Field(default_factory=_Kafka)

    @model_validator(mode="after")
    def _complete(self) -> CloudEventsConfig:
        if not self.enable:
            return self
        if self.type is None:
            raise ValueError("cloud_events.type is required when enable is true: kafka, aws or gcp")
        if not self.topic:
            raise ValueError(
                "cloud_events.eventsPublisher.topicName (or topicName) is required: the topic, "
                "queue URL or ARN the events go to"
            )
        if self.type == "gcp" and not (self.gcp.projectId or self.topic.startswith("projects/")):
            raise ValueError(
                "cloud_events.gcp.projectId is required for gcp, or a full topicName "
                "'projects/PROJECT/topics/TOPIC'"
            )
        return self

    @property
    def topic(self) -> str:
        return self.eventsPublisher.topicName or self.topicName or ""

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds that go out: workflow, node, task."""
        chosen = set(self.eventsPublisher.eventTypes or self.events or ["all"])
        return frozenset({"workflow", "node", "task"} if "all" in chosen else chosen)

    @property
    def aws_region(self) -> str | None:
        return self.aws.region or self.region


def load_cloud_events(path: Path) -> dict[str, Any]:
    """The ``cloud_events`` block of a YAML file (or the file's top level if it has no such key).

    Raises:
        ValueError: the file is missing or is not YAML with a mapping.
    """
    import yaml  # here: every import of the settings would pay for it (12 ms), few read it

    try:
        data = yaml.safe_load(path.read_text())  # safe: a config file, never code
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cloud_events file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"cloud_events file {path} must hold a mapping")
    block = data.get("cloud_events", data)
    if not isinstance(block, dict):
        raise ValueError(f"cloud_events in {path} must be a mapping")
    return block

"""The cloud_events block: Flyte's shape or flat, checked at start with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from triggers.settings import Settings


def test_flytes_nested_shape_and_the_flat_one_mean_the_same() -> None:
    nested = Settings(
        cloud_events={
            "enable": True,
            "type": "aws",
            "aws": {"region": "eu-west-1"},
            "eventsPublisher": {"topicName": "arn:aws:sns:eu-west-1:1:t", "eventTypes": ["task"]},
        }
    ).cloud_events
    flat = Settings(
        cloud_events={
            "enable": True,
            "type": "aws",
            "region": "eu-west-1",
            "topicName": "arn:aws:sns:eu-west-1:1:t",
            "events": ["task"],
        }
    ).cloud_events
    for config in (nested, flat):
        assert (config.topic, config.aws_region, config.kinds) == (
            "arn:aws:sns:eu-west-1:1:t",
            "eu-west-1",
            frozenset({"task"}),
        )


def test_egress_is_off_by_default_and_all_means_every_kind() -> None:
    assert not Settings().cloud_events.enable
    config = Settings(cloud_events={"enable": True, "type": "kafka", "topicName": "t"})
    assert config.cloud_events.kinds == {"workflow", "node", "task"}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"enable": True, "topicName": "t"}, "cloud_events.type is required"),
        ({"enable": True, "type": "aws"}, "topicName) is required"),
        ({"enable": True, "type": "sqs", "topicName": "t"}, "cloud_events.type"),
        ({"enable": True, "type": "gcp", "topicName": "t"}, "cloud_events.gcp.projectId"),
        ({"enable": True, "type": "aws", "eventsPublisher": {"topicNam": "t"}}, "topicNam"),
        ({"enable": True, "type": "kafka", "topicName": "t", "events": ["runs"]}, "events"),
    ],
)
def test_a_bad_block_fails_at_start_naming_the_key(block: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(cloud_events=block)


def test_the_block_can_come_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "egress.yaml"
    path.write_text(
        "cloud_events:\n  enable: true\n  type: kafka\n"
        "  eventsPublisher:\n    topicName: lineage\n    eventTypes: [workflow]\n"
    )
    config = Settings(cloud_events_file=path).cloud_events
    assert (config.enable, config.topic, config.kinds) == (True, "lineage", {"workflow"})
    path.write_text("cloud_events: [not, a, mapping]\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        Settings(cloud_events_file=path)

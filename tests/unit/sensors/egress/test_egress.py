"""A lifecycle record as it leaves: CloudEvents JSON with every attribute, its kind known."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord

from sensors.egress.base import kind_of, outgoing
from sensors.runs.models import PhaseChange
from sensors.stages.lifecycle_relay import lifecycle_record
from triggers.settings import Settings


def record(attempt: int | None) -> ConsumerRecord[bytes, bytes]:
    change = PhaseChange(
        id=7,
        project="p",
        domain="d",
        name="refresh-abc",
        flow="refresh",
        attempt=attempt,
        phase="RUNNING",
        at=datetime(2026, 11, 23, 12, tzinfo=UTC),
    )
    made = lifecycle_record(change, Settings())
    return ConsumerRecord(
        "tripwire.run-events", 0, 1, 0, 0, made.key, made.value, None, 0, 0, made.headers
    )


def test_a_lifecycle_event_leaves_as_cloudevents_json_with_its_subject() -> None:
    event = json.loads(outgoing(record(None), source=None).structured)
    assert event["specversion"] == "1.0"
    assert event["type"] == "com.tripwire.resource.workflow"
    assert event["subject"] == "WorkflowExecutionEvent"
    assert event["id"] == "p.d.phase-7" and event["time"].startswith("2026-11-23T12:00:00")
    assert event["source"] == "tripwire://runs/p/d"
    assert event["data"]["execution_id"]["name"] == "refresh-abc"
    assert event["data"]["phase"] == "RUNNING"


def test_the_deployment_can_name_itself_as_the_source_and_kinds_are_told_apart() -> None:
    out = outgoing(record(1), source="tripwire://prod-eu")
    assert json.loads(out.structured)["source"] == "tripwire://prod-eu"
    assert dict(out.headers)["ce_source"] == b"tripwire://prod-eu"
    assert (kind_of(record(None)), kind_of(record(1))) == ("workflow", "task")

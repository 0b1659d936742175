"""What the web page says made a run."""

from __future__ import annotations

from datetime import UTC, datetime

from sensors.api.web import triggered_by
from sensors.runs.models import RunRecord
from tests.fixtures.runs import new_run

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def run(**fields: object) -> RunRecord:
    return RunRecord.model_validate(
        {**new_run().model_dump(), "phase": "QUEUED", "created_at": AT, "updated_at": AT, **fields}
    )


def test_a_run_names_the_events_the_schedule_or_the_hand_that_made_it() -> None:
    assert triggered_by(run()) == ["e 1"]
    assert triggered_by(run(events=[], scheduled_at=AT)) == [
        "by schedule, tick 2026-11-23T08:00:00+00:00"
    ]
    assert triggered_by(run(events=[], sensor_id=None)) == ["created by hand"]

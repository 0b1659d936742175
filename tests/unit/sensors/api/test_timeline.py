"""A run's timeline bar on its page: scaled to now while the run goes on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sensors.api.timeline import marks, segments
from sensors.queries.runs import RunDetail
from sensors.runs.models import PhaseChange, RunRecord
from tests.fixtures.runs import new_run

QUEUED = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
RUNNING = QUEUED + timedelta(seconds=0.03)


def detail(*phases: tuple[str, datetime]) -> RunDetail:
    finished = phases[-1][1] if phases[-1][0] in ("SUCCEEDED", "FAILED") else None
    run = RunRecord.model_validate(
        {
            **new_run().model_dump(),
            "phase": phases[-1][0],
            "created_at": QUEUED,
            "updated_at": phases[-1][1],
            "finished_at": finished,
        }
    )
    history = [
        PhaseChange(id=i, project="p", domain="d", name=run.name, flow="flow", phase=p, at=at)
        for i, (p, at) in enumerate(phases)
    ]
    return RunDetail(run=run, attempts=[], history=history)


def test_a_running_runs_bar_reaches_now_and_its_moment_in_queued_stays_a_sliver() -> None:
    # Given a run queued for 0.03 s and running for the 10 s since
    going = detail(("QUEUED", QUEUED), ("RUNNING", RUNNING))
    now = RUNNING + timedelta(seconds=10)
    # Then QUEUED takes the narrowest width and RUNNING the rest, up to now
    queued, running = segments(going, now)
    assert queued == {"phase": "QUEUED", "left": 0.0, "width": 0.5}
    assert running["phase"] == "RUNNING" and running["left"] == 0.3
    assert running["left"] + running["width"] == 100.0
    assert [m["left"] for m in marks(going, now)] == [0.0, 0.3]


def test_a_finished_runs_bar_ends_at_its_last_phase_with_a_short_cap() -> None:
    done = detail(
        ("QUEUED", QUEUED), ("RUNNING", RUNNING), ("SUCCEEDED", QUEUED + timedelta(seconds=2))
    )
    later = RUNNING + timedelta(hours=1)  # when the page is opened makes no difference
    queued, running, succeeded = segments(done, later)
    assert queued["width"] == 1.5 and running["left"] == 1.5 and running["width"] == 98.5
    assert succeeded == {"phase": "SUCCEEDED", "left": 97.0, "width": 3.0}
    assert marks(done, later)[-1]["left"] == 100.0

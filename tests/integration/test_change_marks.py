"""What the live pages poll, on SQLite and PostgreSQL: marks that move with what they show,
read once for all the pages open."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from sensors.api.live import TOPICS, Changes
from sensors.api.recent import RecentEvents
from sensors.queries.changes import change_marks
from sensors.runs.import_problems import ImportProblem, record_import_problems
from sensors.runs.models import FilterCount, Hold, TriggerFailure
from sensors.runs.phases import WorkflowPhase
from sensors.runs.sensor_records import record_trigger_failure
from sensors.runs.signals import give_signal, wait_started
from sensors.runs.status import add_filter_counts, replace_holds
from sensors.runs.store import RunStore
from tests.fixtures.runs import new_run
from triggers.settings import Settings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
SETTINGS = Settings(project="p", domain="d")


async def marks(store: RunStore, project: str = "p") -> dict[str, tuple[str, ...]]:
    return await change_marks(store, project=project, domain="d")


async def moved(store: RunStore, before: dict[str, tuple[str, ...]]) -> set[str]:
    after = await marks(store)
    return {topic for topic in after if after[topic] != before[topic]}


def hold(key: str) -> Hold:
    return Hold(
        sensor_id="flow.trigger",
        key=key,
        dep="e",
        event_id=f"ev-{key}",
        event_time=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


async def test_the_marks_stay_while_nothing_changes(run_store: RunStore) -> None:
    await run_store.create_run(new_run())
    first = await marks(run_store)
    assert set(first) == {"runs", "sensors"}
    assert await moved(run_store, first) == set()


async def test_runs_move_with_each_new_run_phase_and_signal(run_store: RunStore) -> None:
    before = await marks(run_store)
    await run_store.create_run(new_run())
    assert await moved(run_store, before) == {"runs"}
    before = await marks(run_store)
    await run_store.transition("p", "d", "flow-abc", WorkflowPhase.RUNNING)
    assert await moved(run_store, before) == {"runs"}
    where = {"project": "p", "domain": "d", "run_name": "flow-abc", "name": "approval"}
    before = await marks(run_store)
    await wait_started(run_store, **where, expected_type="bool", timeout_at=None)
    assert await moved(run_store, before) == {"runs"}
    before = await marks(run_store)
    await give_signal(run_store, **where, value=True)
    assert await moved(run_store, before) == {"runs"}


async def test_sensors_move_with_what_workers_report_held_filtered_and_failed(
    run_store: RunStore,
) -> None:
    before = await marks(run_store)
    await replace_holds(run_store, "p", "d", {("flow.trigger", "a"): [hold("a")]})
    assert await moved(run_store, before) == {"sensors"}
    # a key that empties deletes its rows: the count sees it
    before = await marks(run_store)
    await replace_holds(run_store, "p", "d", {("flow.trigger", "a"): []})
    assert await moved(run_store, before) == {"sensors"}
    before = await marks(run_store)
    count = FilterCount(
        sensor_id="flow.trigger", dep="e", count=1, last_reason="r", last_event_id="x", last_at=NOW
    )
    await add_filter_counts(run_store, "p", "d", [count])
    assert await moved(run_store, before) == {"sensors"}
    before = await marks(run_store)
    failure = TriggerFailure(
        sensor_id="flow.trigger", event_name="e", event_id="1", reason="bad", created_at=NOW
    )
    await record_trigger_failure(run_store, failure)
    assert await moved(run_store, before) == {"sensors"}


async def test_sensors_move_when_a_flow_file_fails_to_import_and_when_it_is_fixed(
    run_store: RunStore,
) -> None:
    problem = ImportProblem(path="flows/bad.py", line=1, error="E", traceback="tb", seen_at=NOW)
    before = await marks(run_store)
    await record_import_problems(run_store, [problem], project="p", domain="d")
    assert await moved(run_store, before) == {"sensors"}
    before = await marks(run_store)
    await record_import_problems(run_store, [], project="p", domain="d")
    assert await moved(run_store, before) == {"sensors"}


async def test_what_workers_report_of_another_project_moves_nothing_here(
    run_store: RunStore,
) -> None:
    before = await marks(run_store)
    await replace_holds(run_store, "q", "d", {("flow.trigger", "a"): [hold("a")]})
    assert await moved(run_store, before) == set()
    assert (await marks(run_store, "q"))["sensors"] != before["sensors"]


async def test_one_read_of_the_store_serves_every_stream_that_asks_meanwhile(
    run_store: RunStore,
) -> None:
    # Given the live pages' reader on a store whose statements are counted
    sources = (run_store, SETTINGS, RecentEvents(SETTINGS))
    changes = Changes()
    statements: list[str] = []
    event.listen(
        run_store.engine.sync_engine,
        "before_cursor_execute",
        lambda _conn, _cursor, sql, *_: statements.append(sql),
    )
    # When twenty streams ask for the marks at once
    found = await asyncio.gather(*(changes.read(*sources, max_age=60) for _ in range(20)))
    # Then the store was read once, and they all got its answer
    assert len([s for s in statements if "run_phases" in s]) == 1
    assert all(marks == found[0] for marks in found) and set(found[0]) == set(TOPICS)


async def test_a_topic_is_as_old_as_the_read_that_saw_it_change(run_store: RunStore) -> None:
    sources, changes = (run_store, SETTINGS, RecentEvents(SETTINGS)), Changes()
    # What changed before the first read has no age: pages are taken to show it
    await run_store.create_run(new_run("before"))
    await changes.read(*sources, max_age=0)
    assert changes.ages() == dict.fromkeys(TOPICS)
    # A new run after it makes the runs as old as the read that saw it, and only them
    await run_store.create_run(new_run("after"))
    await changes.read(*sources, max_age=0)
    first = changes.ages()
    assert first["runs"] is not None and first["sensors"] is None and first["events"] is None
    await changes.read(*sources, max_age=0)
    later = changes.ages()["runs"]
    assert later is not None and later > first["runs"]

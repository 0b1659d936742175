"""The runs list's query on SQLite and PostgreSQL: filters, and pages by a keyset cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest

from sensors.queries.runs import (
    RunKey,
    RunQuery,
    flow_names,
    parse_run_query,
    parse_since,
    runs_page,
)
from sensors.runs.deploy import deploy
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from sensors.runs.tables import named, runs
from tests.fixtures.runs import new_run
from triggers import trigger
from triggers.declarations import flow_spec

pytestmark = pytest.mark.integration

P = WorkflowPhase
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


async def given_runs(store: RunStore, *made: tuple[str, str, int, P]) -> None:
    """Runs (name, flow, minutes after T0, phase) in project p, domain d, created when said."""
    for name, flow, minutes, phase in made:
        await store.create_run(new_run(name, flow=flow))
        if phase != P.QUEUED:
            await store.transition("p", "d", name, P.RUNNING)
        if phase not in (P.QUEUED, P.RUNNING):
            await store.transition("p", "d", name, phase)
        async with store.connection(write=True) as conn:
            moment = T0 + timedelta(minutes=minutes)
            await conn.execute(
                runs.update().where(*named(runs, "p", "d", name)).values(created_at=moment)
            )


async def names(store: RunStore, query: RunQuery) -> list[str]:
    page = await runs_page(store, query, project="p", domain="d")
    return [r.name for r in page.runs]


async def test_the_list_filters_by_flow_phase_and_creation_time(run_store: RunStore) -> None:
    await given_runs(
        run_store,
        ("etl-1", "etl", 0, P.SUCCEEDED),
        ("etl-2", "etl", 10, P.FAILED),
        ("etl-3", "etl", 20, P.RUNNING),
        ("report-1", "report", 30, P.FAILED),
        ("other-1", "other", 40, P.QUEUED),
    )
    await run_store.create_run(new_run("elsewhere", project="q", flow="etl"))
    now = T0 + timedelta(minutes=45)

    def query(text: str) -> RunQuery:
        return parse_run_query(parse_qsl(text), now)

    # newest first, and only this project's and domain's
    assert await names(run_store, query("")) == ["other-1", "report-1", "etl-3", "etl-2", "etl-1"]
    assert await names(run_store, query("flow=etl")) == ["etl-3", "etl-2", "etl-1"]
    assert await names(run_store, query("flow=etl,report")) == [
        "report-1",
        "etl-3",
        "etl-2",
        "etl-1",
    ]
    assert await names(run_store, query("phase=failed")) == ["report-1", "etl-2"]
    assert await names(run_store, query("phase=FAILED,running&flow=etl")) == ["etl-3", "etl-2"]
    # after is inclusive, before is not; relative times count back from now
    assert await names(
        run_store, query("after=2026-11-23T08:10:00Z&before=2026-11-23T08:30:00Z")
    ) == [
        "etl-3",
        "etl-2",
    ]
    assert await names(run_store, query("after=25m")) == ["other-1", "report-1", "etl-3"]
    # a time with another offset is the same moment, even with its + unescaped in the URL
    assert await names(run_store, query("before=2026-11-23T10:05:00%2B02:00")) == ["etl-1"]
    assert await names(run_store, query("before=2026-11-23T10:05:00+02:00")) == ["etl-1"]
    assert await names(run_store, query("flow=nothing")) == []


async def test_pages_follow_each_other_by_cursor_without_gaps_or_repeats(
    run_store: RunStore,
) -> None:
    # Given seven runs, three of them created at the same moment (the name breaks the tie)
    minutes = {"r1": 1, "r2": 2, "r3": 3, "r4": 3, "r5": 3, "r6": 6, "r7": 7}
    await given_runs(run_store, *((name, "f", m, P.QUEUED) for name, m in minutes.items()))
    # When the list is read three at a time, older and older
    first = await runs_page(run_store, RunQuery(limit=3), project="p", domain="d")
    assert [r.name for r in first.runs] == ["r7", "r6", "r5"]
    assert first.newer is None and first.older == RunKey.of(first.runs[-1])
    second = await runs_page(
        run_store, RunQuery(limit=3, older=first.older), project="p", domain="d"
    )
    assert [r.name for r in second.runs] == ["r4", "r3", "r2"]
    assert second.newer == RunKey.of(second.runs[0]) and second.older is not None
    third = await runs_page(
        run_store, RunQuery(limit=3, older=second.older), project="p", domain="d"
    )
    assert [r.name for r in third.runs] == ["r1"]
    assert third.older is None and third.newer is not None
    # Then newer and newer leads back the same way
    back = await runs_page(run_store, RunQuery(limit=3, newer=third.newer), project="p", domain="d")
    assert [r.name for r in back.runs] == ["r4", "r3", "r2"]
    assert back.newer is not None and back.older is not None
    top = await runs_page(run_store, RunQuery(limit=3, newer=back.newer), project="p", domain="d")
    assert [r.name for r in top.runs] == ["r7", "r6", "r5"]
    assert top.newer is None and top.older is not None
    # And a cursor made into a URL and back lands where it was
    again = RunKey.from_token(second.older.token(), "older") if second.older else None
    assert again == second.older


async def test_a_cursor_keeps_its_place_when_newer_runs_arrive(run_store: RunStore) -> None:
    await given_runs(run_store, *((f"r{i}", "f", i, P.QUEUED) for i in range(1, 6)))
    first = await runs_page(run_store, RunQuery(limit=2), project="p", domain="d")
    await given_runs(run_store, ("r9", "f", 9, P.QUEUED))
    second = await runs_page(
        run_store, RunQuery(limit=2, older=first.older), project="p", domain="d"
    )
    assert [r.name for r in second.runs] == ["r3", "r2"]


async def test_a_cursor_from_another_time_zone_is_the_same_place(run_store: RunStore) -> None:
    await given_runs(run_store, ("a", "f", 1, P.QUEUED), ("b", "f", 2, P.QUEUED))
    east = timezone(timedelta(hours=9))
    key = RunKey((T0 + timedelta(minutes=2)).astimezone(east), "b")
    page = await runs_page(run_store, RunQuery(older=key), project="p", domain="d")
    assert [r.name for r in page.runs] == ["a"]


async def test_the_flows_to_filter_by_are_the_deployed_ones(run_store: RunStore) -> None:
    @trigger(event="e")
    def etl() -> None: ...

    @trigger(event="e")
    def report() -> None: ...

    await deploy(run_store, [flow_spec(report), flow_spec(etl)], project="p", domain="d")
    assert await flow_names(run_store, project="p", domain="d") == ["etl", "report"]
    assert await flow_names(run_store, project="p", domain="other") == []


async def test_created_at_is_compared_as_a_time_on_both_backends(run_store: RunStore) -> None:
    # Guard for the SQLite text comparison: microseconds and the UTC text sort as times.
    await given_runs(run_store, ("a", "f", 0, P.QUEUED))
    async with run_store.connection(write=True) as conn:
        moment = T0 + timedelta(microseconds=999_999)
        await conn.execute(runs.update().values(created_at=moment))
    after = parse_run_query([("after", "2026-11-23T08:00:00.5+00:00")], T0)
    assert await names(run_store, after) == ["a"]
    before = parse_run_query([("before", "2026-11-23T08:00:01Z")], T0)
    assert await names(run_store, before) == ["a"]


async def test_runs_listed_since_a_time_with_an_offset_are_those_after_that_moment(
    run_store: RunStore,
) -> None:
    # `tripwire runs list --since` and the API's ?since= go through parse_since too
    await given_runs(run_store, ("early", "f", 0, P.QUEUED), ("late", "f", 30, P.QUEUED))
    since = parse_since("2026-11-23T10:15:00+02:00", T0)  # 08:15 UTC
    assert since.tzinfo == UTC
    assert [r.name for r in await run_store.list_runs(project="p", since=since)] == ["late"]

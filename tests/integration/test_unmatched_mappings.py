"""A mapping that matched nothing (a misspelt field): the run keeps the default and says
so, in `runs get`, on its page and in the sensor's count, on the real broker and store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sensors.core.sensor import build_sensors
from sensors.core.types import Arrival, Decisions, make_fire
from sensors.core.wire import run_request
from sensors.queries.runs import run_detail
from sensors.runs.models import NewRun, UnmatchedCount
from sensors.runs.store import RunStore
from sensors.runs.unmatched import add_unmatched_counts, list_unmatched_counts
from tests.fixtures.engine import Api, finished_run, tripwire_cli
from tests.fixtures.waits import eventually
from triggers import publish, trigger
from triggers.declarations import flow_spec
from triggers.envelope import Envelope
from triggers.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


@trigger(event={"name": "data_updated", "parameters": {"window": "$.cfg.days"}})
def refresh(window: int = 3) -> None: ...


async def test_a_run_that_kept_a_default_names_the_mapping_after_the_store_round_trip(
    run_store: RunStore,
) -> None:
    # Given a fire of a sensor mapping window from $.cfg.days, on an event with $.cfg.dayz
    [sensor] = build_sensors(
        [flow_spec(refresh)], project="p", domain="d", deployed_at=T0 - timedelta(days=1)
    )
    event = Envelope("data_updated", "ev-7", "s", T0, {"cfg": {"dayz": 7}})
    decisions = Decisions()
    make_fire(sensor, {"data_updated": Arrival(event, T0)}, decisions)
    [fire] = decisions.fires
    # When it becomes a run in the store
    await run_store.create_run(NewRun.model_validate_json(run_request(fire)))
    detail = await run_detail(run_store, fire.run_name, project="p", domain="d")
    # Then the run's detail names the parameter, its default, the path and the event
    assert detail.run.parameters == {"window": 3}
    assert [u.describe() for u in detail.unmatched] == [
        "window: default 3, $.cfg.days matched nothing in event data_updated (id ev-7)"
    ]


async def test_unmatched_counts_add_up_per_sensor_and_keep_the_last(run_store: RunStore) -> None:
    def delta(count: int, run: str) -> UnmatchedCount:
        return UnmatchedCount(
            sensor_id="s.trigger", count=count, last=f"in {run}", last_run=run, last_at=T0
        )

    await add_unmatched_counts(run_store, "p", "d", [delta(2, "run-1")])
    await add_unmatched_counts(run_store, "p", "d", [delta(1, "run-2")])
    await add_unmatched_counts(run_store, "other", "d", [delta(5, "run-3")])

    [found] = await list_unmatched_counts(run_store, project="p", domain="d")
    assert (found.count, found.last, found.last_run, found.last_at) == (3, "in run-2", "run-2", T0)
    assert await list_unmatched_counts(run_store, project="p", domain="d", sensor_id="x") == []


async def test_a_misspelt_field_is_shown_by_runs_get_the_run_page_and_the_sensor_count(
    api: Api, store: RunStore, engine_env: dict[str, str]
) -> None:
    # Given retrain maps window from how_many_days (default 3)
    # When an event misspells it
    payload = {"how_many_dayz": 7, "meta": {"timestamp": "2026-11-23T06:00:00Z"}, "out": ""}
    event_id = await publish.aio("features_ready", payload)
    run = await finished_run(store, event_id)
    line = (
        f"window: default 3, how_many_days matched nothing in event features_ready (id {event_id})"
    )
    # Then the run kept the default and `runs get` says why, in text and in JSON
    assert run.parameters["window"] == 3
    shown = await tripwire_cli(engine_env, "runs", "get", run.name)
    assert shown.returncode == 0, shown.stderr
    assert line in " ".join(shown.stdout.split())  # rich may wrap the line
    as_json = await tripwire_cli(engine_env, "runs", "get", run.name, "--json")
    [unmatched] = json.loads(as_json.stdout)["trigger_info"]["unmatched"]
    assert unmatched == {
        "parameter": "window",
        "default": 3,
        "source": "how_many_days",
        "event": "features_ready",
        "event_id": event_id,
    }
    # And so does the run's page
    async with httpx.AsyncClient(base_url=api.url, headers=api.headers("read")) as client:
        page = await client.get(f"/runs/{run.project}/{run.domain}/{run.name}")
    assert page.status_code == 200 and line in page.text
    # And the sensor counts it, with the last one
    settings = Settings()
    counted = await eventually(
        lambda: list_unmatched_counts(
            store, project=settings.project, domain=settings.domain, sensor_id="retrain.trigger"
        ),
        "the sensor to count the mapping that matched nothing",
    )
    assert [(c.count, c.last, c.last_run) for c in counted] == [(1, line, run.name)]
    # And `sensors status` and the page show the count, with the last one
    status = await tripwire_cli(engine_env, "sensors", "status", "retrain.trigger")
    assert "1 mapping(s) kept their default" in status.stdout
    assert line in " ".join(status.stdout.split()) and run.name in status.stdout
    async with httpx.AsyncClient(base_url=api.url, headers=api.headers("read")) as client:
        assert line in (await client.get("/")).text

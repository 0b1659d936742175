"""A sensor's page in headless Chromium: its last hour per dependency (events offered, one
filtered out with its reason, one held with the time it has left), its fire linked to its
run, a threshold's and a sequence's progress, and a 404 that suggests the id meant.

Screenshots go to ``$TRIPWIRE_TEST_ARTIFACTS`` (default ``artifacts/`` in the repo).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensors.api import ApiServer
from sensors.engine import Engine
from sensors.queries.sensors import sensor_statuses
from sensors.registry import discover_flows
from sensors.runs.activity import list_marks
from sensors.runs.models import KeyProgress
from sensors.runs.status import list_progress
from sensors.runs.store import RunStore
from tests.fixtures.engine import Api, api_settings, finished_run
from tests.fixtures.waits import eventually
from tests.fixtures.web import ARTIFACTS, logged_in, publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration

KINDS = Path(__file__).parent / "kinds"
SENSOR = "big_payment.trigger"  # payment (amount >= 100) && (approved || waived)


async def marked(api: Api, store: RunStore, event_id: str, kind: str) -> None:
    """Wait until the sensor stage reported ``event_id`` as ``kind`` for the sensor."""

    async def probe() -> bool:
        marks = await list_marks(
            store,
            project=api.settings.project,
            domain=api.settings.domain,
            sensor_id=SENSOR,
            since=datetime.now(UTC) - timedelta(hours=1),
        )
        return any(m.event_id == event_id and m.kind == kind for m in marks)

    await eventually(probe, f"event {event_id} {kind} on {SENSOR}'s timeline")


async def test_a_sensors_page_shows_its_hour_per_dependency_its_fire_and_what_it_holds(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given a payment the filter rejects, then a big one and an approval, which fire a run
    small = await publish(api, "payment", {"amount": 5})
    await marked(api, store, small, "filtered")
    big = await publish(api, "payment", {"amount": 250})
    await marked(api, store, big, "offered")
    approved = await publish(api, "approved", {})
    run = await finished_run(store, approved)
    # And another big payment, held until an approval comes
    held = await publish(api, "payment", {"amount": 300})

    async def holding() -> bool:
        [status] = await sensor_statuses(
            store, project=api.settings.project, domain=api.settings.domain, only=SENSOR
        )
        return any(h.event_id == held for d in status.dependencies for h in d.held)

    await eventually(holding, "the worker to report the held payment")
    await marked(api, store, held, "offered")
    # When an operator opens the sensor's page
    page = await logged_in(browser, api)
    await page.goto(f"{api.url}/sensors/{SENSOR}")
    # Then it says what fires the sensor
    assert "payment && (approved || waived)" in await page.inner_text("#description")
    # And the payment lane marks both big payments as offered, and the small one as filtered
    # out with the reason
    payments = page.locator('#timeline .row[data-dep="payment"]')
    offered = payments.locator(".ev.offered")
    assert {await offered.nth(i).get_attribute("data-event") for i in range(2)} == {big, held}
    assert await offered.count() == 2
    filtered = payments.locator(".ev.filtered")
    assert await filtered.get_attribute("data-event") == small
    title = await filtered.get_attribute("title")
    assert title is not None and "$.amount = 5 is not >= 100" in title
    assert "$.amount = 5 is not >= 100" in await page.inner_text("#filtered")
    # And the approval lane marks the approval, and the waiver lane nothing
    approvals = page.locator('#timeline .row[data-dep="approved"] .ev.offered')
    assert await approvals.get_attribute("data-event") == approved
    assert await page.locator('#timeline .row[data-dep="waived"] .ev').count() == 0
    # And the held payment is a bar that says how long it has left, as the table does
    bar = payments.locator(f'.hold[data-event="{held}"]')
    assert re.fullmatch(r"expires in \d+[hm] \d+[ms]", await bar.inner_text())
    holds = await page.inner_text("#holds")
    assert held in holds and re.search(r"in \d+[hm] \d+[ms]", holds)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "web-sensor.png"), full_page=True)
    # And the fire links to its run
    fire = page.locator(f'#fires-lane a.fire[data-run="{run.name}"]')
    assert await fire.count() == 1
    await fire.click()
    await page.wait_for_url(f"**/runs/{run.project}/{run.domain}/{run.name}")
    assert await page.inner_text("#phase") == "SUCCEEDED"


async def test_an_unknown_sensor_gets_a_404_page_that_suggests_the_id_meant(api: Api) -> None:
    reader = {"tripwire_token": api.tokens["read"]}
    async with httpx.AsyncClient(base_url=api.url, cookies=reader) as client:
        answer = await client.get("/sensors/big_paymnet.trigger")
        flow_only = await client.get("/sensors/refresh")
    assert answer.status_code == 404
    assert "no sensor &#39;big_paymnet.trigger&#39; is deployed" in answer.text
    assert 'href="/sensors/big_payment.trigger"' in answer.text
    assert flow_only.status_code == 404
    assert "did you mean &#39;refresh.trigger&#39;?" in flow_only.text


@pytest.fixture
async def kinds_api(engine_env: dict[str, str]) -> AsyncIterator[tuple[Api, RunStore]]:
    """A worker with one flow of each trigger kind (tests/integration/kinds), and its API."""
    async with Engine(Settings(), discover_flows([KINDS])) as running:
        await running.wait_ready(timeout=30)
        assert running.store is not None
        settings, tokens = api_settings()
        server = ApiServer(settings)
        url = await server.start()
        try:
            yield Api(url, tokens, settings), running.store
        finally:
            await server.stop()


async def test_a_thresholds_and_a_sequences_pages_show_how_far_they_got(
    kinds_api: tuple[Api, RunStore], browser: Any
) -> None:
    api, store = kinds_api
    where = {"project": api.settings.project, "domain": api.settings.domain}
    # Given two of the three failures that fire the threshold for customer c1
    for order in (1, 2):
        await publish(api, "order_failed", {"customer": "c1", "order": order})
    # And the first of the two steps of a sequence
    await publish(api, "extract_done", {"batch": "b1"})

    async def progress(sensor_id: str, want: dict[str, int]) -> list[KeyProgress]:
        found = await list_progress(store, **where, sensor_id=sensor_id)
        return [p for p in found if p.model_dump(include=set(want)) == want]

    await eventually(
        lambda: progress("too_many_failures.trigger", {"count": 2}), "the threshold's count"
    )
    await eventually(lambda: progress("validated.trigger", {"position": 1}), "the sequence's step")
    page = await logged_in(browser, api)
    # When the threshold's page is opened, then it says how many of how many it counted
    await page.goto(f"{api.url}/sensors/too_many_failures.trigger")
    text = await page.inner_text("#progress")
    assert "2 of 3" in text and '"c1"' in text
    await page.screenshot(path=str(ARTIFACTS / "web-sensor-threshold.png"), full_page=True)
    # And the sequence's page says which step is next
    await page.goto(f"{api.url}/sensors/validated.trigger")
    assert "at step 1/2, next validate_done" in await page.inner_text("#progress")

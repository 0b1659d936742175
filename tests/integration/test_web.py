"""The web page in headless Chromium: log in, see a run an event triggered, signal a run.

Screenshots go to ``$TRIPWIRE_TEST_ARTIFACTS`` (default ``artifacts/`` in the repo).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import Api, finished_run
from tests.fixtures.servers import server_missing
from tests.fixtures.signals import waiting_run

pytestmark = pytest.mark.integration

ARTIFACTS = Path(
    os.environ.get("TRIPWIRE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts")
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        server_missing("no Chromium: `apt-get install chromium` (Debian)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def publish(api: Api, name: str, payload: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=api.url) as client:
        answer = await client.post(f"/api/v1/events/{name}", json=payload, headers=api.headers())
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def test_the_page_shows_a_run_an_event_triggered_and_its_timeline(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given a run that an event triggered during this test
    event_id = await publish(api, "data_updated", {"rows": 12, "table": "web"})
    run = await finished_run(store, event_id)
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    # When an operator opens the page, it asks for the token first
    await page.goto(f"{api.url}/")
    assert page.url.endswith("/login")
    await page.fill("#token", "tw_wrong")
    await page.click("#login")
    assert "invalid token" in await page.inner_text("#message")
    await page.fill("#token", api.tokens["read"])
    await page.click("#login")
    # Then it lists the run with its phase and the event that triggered it
    await page.wait_for_selector(f"#runs >> text={run.name}")
    row = page.locator("#runs tr", has_text=run.name)
    assert "SUCCEEDED" in await row.inner_text()
    assert event_id in await row.inner_text()
    assert event_id in await page.inner_text("#events")  # recent events, from the topic
    sensors = await page.inner_text("#sensors")
    assert "refresh.trigger" in sensors and "awaited" in sensors
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "web-index.png"), full_page=True)
    # And the run's page shows its phase timeline
    await page.click(f"#runs >> text={run.name}")
    assert await page.inner_text("#phase") == "SUCCEEDED"
    history = await page.inner_text("#history")
    assert history.index("QUEUED") < history.index("RUNNING") < history.index("SUCCEEDED")
    await page.screenshot(path=str(ARTIFACTS / "web-run.png"), full_page=True)


async def test_a_waiting_run_is_signalled_from_its_page(
    api: Api, store: RunStore, browser: Any
) -> None:
    event_id = await publish(api, "needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    page = await browser.new_page()
    await page.goto(f"{api.url}/login")
    await page.fill("#token", api.tokens["admin"])
    await page.click("#login")
    await page.goto(f"{api.url}/runs/{run.project}/{run.domain}/{run.name}")
    assert "RUNNING" in await page.inner_text("#signals")
    await page.screenshot(path=str(ARTIFACTS / "web-signal.png"), full_page=True)
    await page.click("#signal-approval-true")
    assert "signalled approval = true" in await page.inner_text("#message")
    done = await finished_run(store, event_id)
    assert done.phase == WorkflowPhase.SUCCEEDED


async def test_a_read_only_token_cannot_signal_from_the_page(api: Api, store: RunStore) -> None:
    event_id = await publish(api, "needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    url = f"/runs/{run.project}/{run.domain}/{run.name}/events/approval/signal"
    reader = {"tripwire_token": api.tokens["read"]}
    async with httpx.AsyncClient(base_url=api.url, cookies=reader) as client:
        answer = await client.post(url, data={"value": "true"})
        assert answer.status_code == 403
    admin = {"tripwire_token": api.tokens["admin"]}
    async with httpx.AsyncClient(base_url=api.url, cookies=admin) as client:
        forged = await client.post(
            url, data={"value": "true"}, headers={"Origin": "http://evil.example"}
        )
        assert forged.status_code == 403

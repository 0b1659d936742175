"""The web page in headless Chromium: log in, see a run an event triggered, signal a run,
read what a correlated sensor holds key by key, and a running run's timeline.

Screenshots go to ``$TRIPWIRE_TEST_ARTIFACTS`` (default ``artifacts/`` in the repo).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from sensors.queries.sensors import sensor_statuses
from sensors.runs import history as runs_history
from sensors.runs.import_problems import ImportProblem, record_import_problems
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import Api, finished_run
from tests.fixtures.signals import waiting_run
from tests.fixtures.waits import eventually
from tests.fixtures.web import ARTIFACTS, logged_in, publish

pytestmark = pytest.mark.integration


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


async def test_the_page_shows_a_correlated_sensors_held_events_key_by_key(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given orders held for one day and customers for another: the keys differ, nothing fires
    await publish(api, "orders_loaded", {"date": "2026-11-23", "rows": 3})
    await publish(api, "customers_loaded", {"date": "2026-11-24", "rows": 5})
    project, domain = api.settings.project, api.settings.domain

    async def both_held() -> bool:
        statuses = await sensor_statuses(
            store, project=project, domain=domain, only="daily_join.trigger"
        )
        return len(statuses[0].keys) == 2

    await eventually(both_held, "the worker to report both keys held")
    # When an operator opens the page
    page = await logged_in(browser, api)
    await page.goto(f"{api.url}/")
    # Then each key says which event it holds and which it still awaits
    keys = await page.inner_text('#sensors tr.keys[data-sensor="daily_join.trigger"]')
    assert 'key "2026-11-23": orders_loaded ✓, customers_loaded awaited' in keys
    assert 'key "2026-11-24": customers_loaded ✓, orders_loaded awaited' in keys
    # And neither dependency reads as satisfied
    rows = page.locator("#sensors tr", has_text="daily_join.trigger")
    assert "held for 1 key" in await rows.first.inner_text()
    assert "satisfied" not in await page.inner_text("#sensors")
    await page.screenshot(path=str(ARTIFACTS / "web-keys.png"), full_page=True)


async def test_the_page_shows_trigger_failures_and_flow_files_that_failed_to_import(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given an event whose value fits no parameter, and a flow file that does not import
    event_id = await publish(api, "data_updated", {"rows": "lots"})
    project, domain = api.settings.project, api.settings.domain
    problem = ImportProblem(
        path="flows/bad.py",
        line=3,
        error="NameError: name 'x' is not defined",
        traceback="Traceback (most recent call last): ...",
        seen_at=datetime.now(UTC),
    )
    await record_import_problems(store, [problem], project=project, domain=domain)

    async def failed() -> bool:
        statuses = await sensor_statuses(
            store, project=project, domain=domain, only="refresh.trigger"
        )
        return any(f.event_id == event_id for f in statuses[0].failures)

    await eventually(failed, "the trigger failure")
    # When an operator opens the page
    page = await logged_in(browser, api)
    await page.goto(f"{api.url}/")
    # Then the import error and the failure with its reason are on it
    assert "flows/bad.py:3: NameError: name 'x' is not defined" in await page.inner_text(
        "#import-errors"
    )
    failures = await page.inner_text('#sensors tr.failures[data-sensor="refresh.trigger"]')
    assert event_id in failures and "'rows'" in failures


async def test_a_running_runs_timeline_reaches_now(api: Api, store: RunStore, browser: Any) -> None:
    # Given a run that has been RUNNING since a moment in QUEUED
    event_id = await publish(api, "needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    changes = [c for c in await runs_history.history(store, *run.key) if c.attempt is None]
    queued, running = changes[0].at, changes[-1].at
    assert changes[-1].phase == "RUNNING"
    # When its page is opened
    page = await logged_in(browser, api)
    before = datetime.now(UTC)
    await page.goto(f"{api.url}/runs/{run.project}/{run.domain}/{run.name}")
    after = datetime.now(UTC)
    # Then the bar runs up to now: RUNNING ends at its right edge and takes the share of the
    # time since the run was queued that it has been running
    bar = await page.locator("#timeline").bounding_box()
    box = await page.locator("#timeline .bg-RUNNING").bounding_box()
    assert abs((box["x"] + box["width"]) - (bar["x"] + bar["width"])) <= 1
    least = (before - running) / (before - queued)
    most = (after - running) / (after - queued)
    assert least - 0.01 <= box["width"] / bar["width"] <= most + 0.01
    await page.screenshot(path=str(ARTIFACTS / "web-running.png"), full_page=True)


async def test_a_failed_runs_page_names_its_error_type_once(api: Api, store: RunStore) -> None:
    event_id = await publish(api, "explode", {"reason": "no disk"})
    run = await finished_run(store, event_id)
    reader = {"tripwire_token": api.tokens["read"]}
    async with httpx.AsyncClient(base_url=api.url, cookies=reader) as client:
        page = await client.get(f"/runs/{run.project}/{run.domain}/{run.name}")
    assert "USER RuntimeError: flow failed on purpose: no disk" in page.text
    assert "RuntimeError: RuntimeError" not in page.text


async def test_the_pages_run_their_own_script_and_no_other(api: Api, browser: Any) -> None:
    # Given the overview, whose one script keeps it current
    page = await logged_in(browser, api)
    await page.wait_for_selector("#live-status.live-live", timeout=15_000)
    # When markup that reached the page tries to run script, inline or as an attribute
    # (each refusal is a securitypolicyviolation event: the barrier to wait for)
    ran = await page.evaluate(
        """() => new Promise((done) => {
            const refused = [];
            document.addEventListener("securitypolicyviolation", (e) => {
                refused.push(e.violatedDirective);
                if (refused.length === 2) done([window.__injected ?? null, refused]);
            });
            const s = document.createElement("script");
            s.textContent = "window.__injected = 1";
            document.body.appendChild(s);
            const img = document.createElement("img");
            img.setAttribute("onerror", "window.__injected = 2");
            img.src = "data:,";
            document.body.appendChild(img);
        })"""
    )
    # Then the policy stopped it, and the page cannot be framed by another site
    injected, refused = ran
    assert injected is None and all(d.startswith("script-src") for d in refused), refused
    async with httpx.AsyncClient(base_url=api.url) as client:
        answer = await client.get("/login")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'sha256-" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]

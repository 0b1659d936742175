"""Pages that keep themselves current, in headless Chromium, and the runs list.

A page is current without a reload when what changed shows on it while ``window.__marker``,
set before the change, is still there: a navigation would have dropped it.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sensors.api import ApiServer, live
from sensors.runs.store import RunStore
from tests.fixtures.engine import Api, api_settings, finished_run
from tests.fixtures.signals import waiting_run
from tests.fixtures.waits import eventually
from tests.fixtures.web import ARTIFACTS, logged_in, publish

pytestmark = pytest.mark.integration

SOON = 15_000  # ms: a change shows within about a second; this leaves room for a slow machine


async def live_page(browser: Any, api: Api, path: str, scope: str = "read") -> Any:
    """A logged-in page at ``path``, following ``/live``, with ``window.__marker`` set."""
    page = await logged_in(browser, api, scope)
    await page.goto(f"{api.url}{path}")
    await page.wait_for_selector("#live-status.live-live", timeout=SOON)
    await page.evaluate("window.__marker = 1")
    return page


async def not_reloaded(page: Any) -> bool:
    return bool(await page.evaluate("window.__marker === 1"))


async def test_a_new_run_shows_on_the_overview_without_a_reload(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given the overview, open and following the server
    page = await live_page(browser, api, "/")
    assert await page.inner_text("#live-status") == "live"
    # (and a part of it that must stay as it is: marked data-live="off")
    await page.evaluate(
        "const kept = document.getElementById('sensors'); kept.dataset.live = 'off';kept.__kept = 1"
    )
    # When an event triggers a run
    event_id = await publish(api, "data_updated", {"rows": 3, "table": "live"})
    run = await finished_run(store, event_id)
    # Then the event and the run show up on the page, finished, and the page never reloaded
    await page.wait_for_selector(f"#events >> text={event_id}", timeout=SOON)
    row = page.locator("#runs tr", has_text=run.name)
    await row.locator("text=SUCCEEDED").wait_for(timeout=SOON)
    assert await not_reloaded(page)
    assert int(await page.evaluate("document.documentElement.dataset.liveRefreshes")) >= 1
    assert await page.evaluate("document.getElementById('sensors').__kept === 1")


async def test_a_fire_shows_on_the_sensor_page_without_a_reload_and_leads_to_its_run(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given a sensor's page, reached from the overview's sensors table
    page = await live_page(browser, api, "/")
    await page.click("#sensors >> text=refresh.trigger")
    await page.wait_for_selector("#fires-lane")
    assert page.url.endswith("/sensors/refresh.trigger")
    await page.wait_for_selector("#live-status.live-live", timeout=SOON)
    await page.evaluate("window.__marker = 1")
    # When an event fires it
    event_id = await publish(api, "data_updated", {"rows": 4, "table": "fires"})
    run = await finished_run(store, event_id)
    # Then the fire shows on the timeline, linked to its run, and the page never reloaded
    fire = page.locator(f"#fires-lane a.fire[data-run='{run.name}']")
    await fire.wait_for(timeout=SOON)
    assert await not_reloaded(page)
    # And the link opens the run's page, with its phase timeline
    await fire.click()
    await page.wait_for_selector("#phase")
    assert await page.inner_text("#phase") == "SUCCEEDED"
    history = await page.inner_text("#history")
    assert history.index("QUEUED") < history.index("RUNNING") < history.index("SUCCEEDED")


async def test_a_run_page_follows_its_run_from_running_to_succeeded(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given the page of a run that waits for a signal
    event_id = await publish(api, "needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    page = await live_page(browser, api, f"/runs/{run.project}/{run.domain}/{run.name}")
    assert await page.inner_text("#phase") == "RUNNING"
    # When it is signalled through the API, elsewhere
    await signal(api, run.name, "approval", True)
    # Then the page shows the signal, then the run succeeding, without a reload
    await (
        page.locator("#signals tr", has_text="approval")
        .locator("text=SUCCEEDED")
        .wait_for(timeout=SOON)
    )
    await page.wait_for_function(
        "document.getElementById('phase').textContent === 'SUCCEEDED'", timeout=30_000
    )
    assert "SUCCEEDED" in await page.inner_text("#history")
    assert await not_reloaded(page)


async def test_what_is_typed_into_a_signal_form_outlives_a_refresh(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given a run page with two text signal forms, and half a value typed into one
    event_id = await publish(api, "needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    for name in ("note", "other"):
        await wait_for(api, run.name, name, "str")
    page = await live_page(browser, api, f"/runs/{run.project}/{run.domain}/{run.name}")
    await page.click("#signal-note-value")
    await page.keyboard.type("half-typ")
    # When the other one is signalled elsewhere while the field has the focus
    await signal(api, run.name, "other", "from the API")
    # Then the page waits: nothing is replaced under the cursor
    await page.wait_for_selector("main#live[data-live-state=deferred]", timeout=SOON)
    assert await page.input_value("#signal-note-value") == "half-typ"
    assert await page.evaluate("document.activeElement.id") == "signal-note-value"
    assert "from the API" not in await page.inner_text("#signals")
    await page.keyboard.type("ed")
    # And once the field lets go of the focus, the page catches up and keeps what was typed
    await page.click("h1")
    other = page.locator("#signals tr", has_text="other")
    await other.locator("text=from the API").wait_for(timeout=SOON)
    assert await page.input_value("#signal-note-value") == "half-typed"
    assert await not_reloaded(page)


async def test_the_runs_list_filters_pages_and_takes_in_new_runs(
    api: Api, store: RunStore, browser: Any
) -> None:
    # Given seven runs of refresh and two of explodes, made by hand, all finished
    names = [f"live-{i}" for i in range(7)]
    for name in names:
        await create_run(api, "refresh", name)
    for name in ("boom-0", "boom-1"):
        await create_run(api, "explodes", name)

    async def all_done() -> bool:
        return all(r.finished_at for r in await store.list_runs(limit=100))

    await eventually(all_done, "the nine runs to finish", timeout=60)
    # When the list of refresh runs is read three at a time
    page = await live_page(browser, api, "/runs?flow=refresh&limit=3")
    assert await shown(page) == ["live-6", "live-5", "live-4"]
    assert await page.locator(".pages a.newer").count() == 0
    await page.locator(".pages a.older").first.click()
    await page.wait_for_url("**older=*")
    assert await shown(page) == ["live-3", "live-2", "live-1"]
    await page.locator(".pages a.older").first.click()
    assert await shown(page) == ["live-0"]
    assert await page.locator(".pages a.older").count() == 0
    await page.locator(".pages a.newer").first.click()
    assert await shown(page) == ["live-3", "live-2", "live-1"]
    # And filtered by phase through the form, on every flow
    await page.goto(f"{api.url}/runs")
    await page.check("#filter-phase input[value=FAILED]")
    await page.click("#filter")
    await page.wait_for_url("**phase=FAILED*")
    assert await shown(page) == ["boom-1", "boom-0"]
    rows = await page.inner_text("#runs")
    assert "explodes" in rows and "created by hand" in rows
    # Then a new run of the filter shows on the list as it happens, without a reload
    await page.goto(f"{api.url}/runs?flow=explodes")
    await page.wait_for_selector("#live-status.live-live", timeout=SOON)
    await page.evaluate("window.__marker = 1")
    await create_run(api, "explodes", "boom-2")
    await page.locator("#runs tr", has_text="boom-2").wait_for(timeout=SOON)
    assert (await shown(page))[0] == "boom-2" and await not_reloaded(page)
    await page.locator("#runs tr", has_text="boom-2").locator("text=FAILED").wait_for(timeout=SOON)
    await page.goto(f"{api.url}/runs?phase=succeeded,failed&limit=6")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "web-runs.png"), full_page=True)


async def test_a_hidden_page_lets_go_of_its_stream_and_catches_up_when_shown(
    api: Api, browser: Any
) -> None:
    # Given the runs list in two tabs, one of them hidden
    hidden = await live_page(browser, api, "/runs")
    shown_page = await live_page(browser, api, "/runs")
    await set_hidden(hidden, True)
    await hidden.wait_for_selector("#live-status.live-paused", timeout=SOON)
    refreshes = await hidden.evaluate("document.documentElement.dataset.liveRefreshes || '0'")
    # When a run is made, and the tab still shown has taken it in, and then another
    # (by when a tab that still followed the server would have taken in the first)
    for name in ("while-hidden", "then-another"):
        await create_run(api, "refresh", name)
        await shown_page.locator("#runs tr", has_text=name).wait_for(timeout=SOON)
    # Then the hidden tab did not refresh meanwhile
    assert "while-hidden" not in await hidden.inner_text("#runs")
    now = await hidden.evaluate("document.documentElement.dataset.liveRefreshes || '0'")
    assert now == refreshes
    # And once shown again, it follows the server again and catches up at once
    await set_hidden(hidden, False)
    await hidden.locator("#runs tr", has_text="while-hidden").wait_for(timeout=SOON)
    assert await hidden.inner_text("#live-status") == "live"
    assert await not_reloaded(hidden)


async def test_a_bad_filter_gets_a_page_naming_it_and_the_forms_the_list_takes(
    api: Api, browser: Any
) -> None:
    page = await logged_in(browser, api)
    answer = await page.goto(f"{api.url}/runs?phase=RUNING&flow=refresh")
    assert answer.status == 422
    problem = await page.inner_text("#problem")
    assert "phase='RUNING' is not a run phase (did you mean 'RUNNING'?)" in problem
    # The form keeps what was asked, to be corrected
    assert await page.input_value("#filter-flow") == "refresh"
    reader = {"tripwire_token": api.tokens["read"]}
    async with httpx.AsyncClient(base_url=api.url, cookies=reader) as client:
        for query, named in [
            ("after=yesterday", "after='yesterday' is not a time"),
            ("limit=5000", "limit='5000' is not a number of runs"),
            ("older=nonsense", "older='nonsense' is not a cursor"),
        ]:
            answer = await client.get(f"/runs?{query}")
            text = html.unescape(answer.text)
            assert answer.status_code == 422 and named in text, query
            assert "24h" in text  # the accepted forms


async def test_live_needs_a_token_and_says_what_changed_since_a_version(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        refused = await client.get("/live")
        assert refused.status_code == 401 and "log in" in refused.text
    reader = {"tripwire_token": api.tokens["read"]}
    async with httpx.AsyncClient(base_url=api.url, cookies=reader, timeout=30) as client:
        # A page that just loaded hears the version, and how long ago each topic changed
        async with client.stream("GET", "/live") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            hello = await next_event(stream.aiter_lines())
        assert hello["event"] == "hello" and set(hello["data"]["ages"]) == set(live.TOPICS)
        version = hello["data"]["version"]
        assert hello["id"] == version
        # A browser that reconnects with a version it saw hears only of what changed since
        async with client.stream("GET", "/live", headers={"Last-Event-ID": "x.y.z"}) as stream:
            change = await next_event(stream.aiter_lines())
        assert change["event"] == "change"
        assert set(change["data"]["changed"]) == set(live.TOPICS)
        await create_run(api, "refresh", "since-1")
        async with client.stream("GET", f"/live?since={version}") as stream:
            change = await next_event(stream.aiter_lines())
        assert "runs" in change["data"]["changed"]


async def test_a_quiet_stream_says_now_and_then_that_it_is_still_there(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.5)
    reader = {"tripwire_token": api.tokens["read"]}
    client = httpx.AsyncClient(base_url=api.url, cookies=reader, timeout=30)
    async with client, client.stream("GET", "/live") as stream:
        lines = stream.aiter_lines()
        await next_event(lines)
        async with asyncio.timeout(10):
            async for line in lines:
                if line.startswith(":"):
                    break  # a comment: EventSource ignores it, proxies see traffic
            else:
                raise AssertionError("the stream ended without a comment")


async def test_streams_beyond_the_most_are_refused_with_503(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "MAX_STREAMS", 2)
    reader = {"tripwire_token": api.tokens["read"]}
    async with httpx.AsyncClient(base_url=api.url, cookies=reader, timeout=30) as client:
        async with client.stream("GET", "/live") as one, client.stream("GET", "/live") as two:
            await next_event(one.aiter_lines())
            await next_event(two.aiter_lines())
            refused = await client.get("/live")
            assert refused.status_code == 503 and "close some" in refused.text

        # Streams that ended give their places back
        async def reopened() -> bool:
            async with client.stream("GET", "/live") as again:
                return again.status_code == 200

        await eventually(reopened, "a place for a new stream")


@pytest.fixture
async def own_api(engine: object) -> AsyncIterator[tuple[ApiServer, str, dict[str, str]]]:
    settings, tokens = api_settings()
    server = ApiServer(settings)
    url = await server.start()
    try:
        yield server, url, tokens
    finally:
        await server.stop()


async def test_the_server_stops_at_once_with_a_stream_open(
    own_api: tuple[ApiServer, str, dict[str, str]],
) -> None:
    server, url, tokens = own_api
    reader = {"tripwire_token": tokens["read"]}
    client = httpx.AsyncClient(base_url=url, cookies=reader, timeout=30)
    async with client, client.stream("GET", "/live") as stream:
        lines = stream.aiter_lines()
        await next_event(lines)
        # When the server stops while a page follows it
        started = time.monotonic()
        await server.stop()
        took = time.monotonic() - started
        # Then nothing waited for the stream, and it ended cleanly
        assert took < 3, f"stopping took {took:.1f}s"
        async with asyncio.timeout(5):
            rest = [line async for line in lines]
    assert all(not line.startswith("event:") for line in rest)


async def set_hidden(page: Any, hidden: bool) -> None:
    """Make the page hidden (or shown) as a tab in the background would be."""
    await page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


async def signal(api: Api, run: str, name: str, value: object) -> None:
    s = api.settings
    async with httpx.AsyncClient(base_url=api.url, headers=api.headers("publish")) as client:
        answer = await client.post(
            f"/api/v1/runs/{s.project}/{s.domain}/{run}/events/{name}/signal", json={"value": value}
        )
    assert answer.status_code == 200, answer.text


async def wait_for(api: Api, run: str, name: str, expected_type: str) -> None:
    s = api.settings
    async with httpx.AsyncClient(base_url=api.url, headers=api.headers("publish")) as client:
        answer = await client.put(
            f"/api/v1/runs/{s.project}/{s.domain}/{run}/events/{name}",
            json={"expected_type": expected_type},
        )
    assert answer.status_code == 200, answer.text


async def create_run(api: Api, flow: str, name: str) -> None:
    s = api.settings
    body = {"project": s.project, "domain": s.domain, "flow": flow, "name": name}
    async with httpx.AsyncClient(base_url=api.url, headers=api.headers("admin")) as client:
        answer = await client.post("/api/v1/runs", json=body)
    assert answer.status_code == 201, answer.text


async def shown(page: Any) -> list[str]:
    """The names of the runs the list shows, in order."""
    cells = page.locator("#runs tr td:first-child a")
    return [name.strip() for name in await cells.all_inner_texts()]


async def next_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next event of a ``/live`` stream's lines (comments and ``retry`` skipped)."""
    event: dict[str, Any] = {}
    async with asyncio.timeout(10):
        async for line in lines:
            field, _, value = line.partition(": ")
            if field in ("id", "event"):
                event[field] = value
            elif field == "data":
                event["data"] = json.loads(value)
            elif line == "" and "event" in event:
                return event
    raise AssertionError(f"the stream ended before an event: {event}")

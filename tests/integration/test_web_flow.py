"""The event-flow page (``/flow``) in headless Chromium, over the examples folder as
`tripwire dev examples/` deploys it: every source, event, sensor, clock and flow is a node
of the drawn graph, a trigger_on_finish chain runs through its lifecycle node, a sensor's
node says what it holds, edges carry the rates of what happened, and a click on a sensor
opens its page. Without Graphviz the page shows the graph as a table.

Screenshots go to ``$TRIPWIRE_TEST_ARTIFACTS`` (default ``artifacts/`` in the repo).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensors.api import ApiServer
from sensors.engine import Engine
from sensors.queries.graph import flow_graph
from sensors.queries.sensors import sensor_statuses
from sensors.registry import Declarations, load_declarations
from sensors.runs.deploy import deploy
from sensors.runs.store import RunStore
from sensors.sources.store import deploy_sources
from tests.fixtures.engine import Api, api_settings, finished_run, serving
from tests.fixtures.waits import eventually
from tests.fixtures.web import ARTIFACTS, logged_in, publish
from triggers.settings import Settings
from triggers.spec import finished_event

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def examples() -> Declarations:
    """What `tripwire dev examples/` loads: the folder without its ``_`` subfolders."""
    found = load_declarations([EXAMPLES])
    assert found.problems == []
    return found


def expected_nodes(found: Declarations) -> dict[str, set[str]]:
    """The nodes the examples make, by kind, from their declarations."""
    nodes: dict[str, set[str]] = {kind: set() for kind in ("sensor", "schedule", "lifecycle")}
    nodes["flow"] = {f"flow:{spec.name}" for spec in found.flows}
    nodes["source"] = {f"source:{s.name}" for s in found.sources}
    nodes["event"], nodes["wildcard"] = set(), set()
    for spec in found.flows:
        for trig in spec.triggers:
            sensor_id = f"{spec.name}.{trig.name}"
            if trig.schedule is not None:
                nodes["schedule"].add(f"schedule:{sensor_id}")
                continue
            nodes["sensor"].add(f"sensor:{sensor_id}")
            for dep in trig.dependencies:
                upstream = dep.name.removeprefix(finished_event(""))
                if upstream != dep.name:
                    nodes["lifecycle"].add(f"lifecycle:{upstream}")
                else:
                    kind = "wildcard" if dep.name.endswith("*") else "event"
                    nodes[kind].add(f"event:{dep.name}")
    return nodes


@pytest.fixture
async def served(
    engine_env: dict[str, str], examples: Declarations
) -> AsyncIterator[tuple[Api, RunStore]]:
    """A worker serving the examples (their sources deployed, not run), its API and store."""
    flows, sources = examples.flows, examples.sources
    async with Engine(Settings(sources=False), flows, sources=sources) as engine:
        await engine.wait_ready(timeout=30)
        settings, tokens = api_settings()
        server = ApiServer(settings)
        url = await server.start()
        assert engine.store is not None
        try:
            yield Api(url, tokens, settings), engine.store
        finally:
            await server.stop()


async def drawn_text(page: Any, element_id: str) -> str:
    """The lines an SVG node or edge shows, one per line."""
    return str(
        await page.eval_on_selector(
            f'[id="{element_id}"]',
            "g => [...g.querySelectorAll('text')].map(t => t.textContent).join('\\n')",
        )
    )


async def graph_json(api: Api) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api.url) as client:
        answer = await client.get("/flow?format=json", headers=api.headers("read"))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_the_flow_page_draws_the_examples_with_what_they_hold_and_their_rates(
    served: tuple[Api, RunStore], examples: Declarations, browser: Any
) -> None:
    api, store = served
    project, domain = api.settings.project, api.settings.domain
    # Given an orders load held for its day, and a report run that finished, which
    # runs the dashboard after it
    await publish(api, "orders_loaded", {"date": "2026-11-23", "rows": 3})
    report = await publish(api, "data_updated", {"table": "sales", "rows": 5})
    await finished_run(store, report, timeout=60)

    async def held() -> bool:
        [join] = await sensor_statuses(
            store, project=project, domain=domain, only="daily_join.trigger"
        )
        return bool(join.keys)

    await eventually(held, "daily_join to hold the orders load")

    async def rated() -> dict[str, Any] | None:
        graph = await graph_json(api)
        counts = {e["id"]: e["count"] for e in graph["edges"]}
        wanted = (
            "edge:event:orders_loaded->sensor:daily_join.trigger",
            "edge:sensor:refresh_report.trigger->flow:refresh_report",
            "edge:flow:refresh_report->lifecycle:refresh_report",
        )
        return graph if all(counts[w] >= 1 for w in wanted) else None

    await eventually(rated, "the graph to count the events and runs", timeout=30)
    # When an operator opens the flow page
    page = await logged_in(browser, api)
    await page.goto(f"{api.url}/flow")
    # Then every source, event, wildcard, sensor, clock, lifecycle event and flow of the
    # examples is a node of the drawing, with its kind as its class
    drawn: dict[str, str] = await page.eval_on_selector_all(
        "#graph svg g.node",
        "gs => Object.fromEntries(gs.map(g => [g.id, g.getAttribute('class')]))",
    )
    for kind, ids in expected_nodes(examples).items():
        assert ids, kind
        assert {i for i, c in drawn.items() if c == f"node {kind}"} >= ids, kind
    assert "event:orders.eu.created" not in drawn  # the wildcard is one node
    # And the edges run from sources to downstream flows, and from clocks
    edges = set(await page.eval_on_selector_all("#graph svg g.edge", "gs => gs.map(g => g.id)"))
    assert {
        "edge:source:plant_temperatures->event:machine_overheated",
        "edge:source:shop_orders->event:shop.placed",
        "edge:event:orders.*->sensor:refresh_orders_view.trigger",
        "edge:sensor:refresh_report.trigger->flow:refresh_report",
        "edge:flow:refresh_report->lifecycle:refresh_report",
        "edge:lifecycle:refresh_report->sensor:publish_dashboard.trigger",
        "edge:sensor:publish_dashboard.trigger->flow:publish_dashboard",
        "edge:schedule:nightly_rebuild.schedule->flow:nightly_rebuild",
        "edge:sensor:nightly_rebuild.trigger->flow:nightly_rebuild",
        "edge:event:manual.waiver->sensor:big_payment.trigger",
    } <= edges
    # And the source with computed names is a note until its events arrive
    assert "edge:source:payments_topic->note:payments_topic" in edges
    # And the correlated sensor says what it holds; edges with traffic say their rate
    join = await drawn_text(page, "sensor:daily_join.trigger")
    assert 'key "2026-11-23": holds orders_loaded' in join
    assert "all-of: orders_loaded && customers_loaded" in join
    finish = await drawn_text(page, "edge:flow:refresh_report->lifecycle:refresh_report")
    assert finish.endswith("/min")
    schedule = await drawn_text(page, "schedule:nightly_rebuild.schedule")
    assert "cron 0 2 * * * (Europe/Berlin)" in schedule
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "web-flow.png"), full_page=True)
    # And the sources are listed below, where their nodes link to
    shop = await page.inner_text('#source-list tr[data-source="shop_orders"]')
    assert "nats shop.orders.>" in shop and "event shop.{$.status}" in shop
    await page.click('[id="source:shop_orders"]')
    await page.wait_for_url(f"{api.url}/flow#sources")
    # And a click on a sensor's node opens its page
    await page.click('[id="sensor:daily_join.trigger"]')
    await page.wait_for_url(f"{api.url}/sensors/daily_join.trigger")


@pytest.fixture
async def deployed(engine_env: dict[str, str], examples: Declarations) -> AsyncIterator[Api]:
    """The API over a store where the examples are deployed, with no worker."""
    settings, tokens = api_settings()
    async with await RunStore.open(settings.store_url) as store:
        await deploy(store, examples.flows, project=settings.project, domain=settings.domain)
        await deploy_sources(
            store, examples.sources, project=settings.project, domain=settings.domain
        )
    async with serving(settings, tokens) as running:
        yield running


async def test_without_graphviz_the_page_shows_the_graph_as_a_table(
    deployed: Api, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the examples deployed, and no dot on the PATH of the API
    api = deployed
    monkeypatch.setenv("PATH", "/nowhere")
    # When an operator opens the flow page
    page = await logged_in(browser, api)
    await page.goto(f"{api.url}/flow")
    # Then it says how to install Graphviz, and lists the nodes and edges
    assert await page.inner_text("#no-layout") == (
        "install Graphviz to see the graph drawn: apt-get install graphviz "
        "(Debian/Ubuntu), brew install graphviz (macOS)"
    )
    assert await page.locator("#graph").count() == 0
    row = page.locator('#nodes tr[data-node="sensor:daily_join.trigger"]')
    assert "all-of: orders_loaded && customers_loaded" in await row.inner_text()
    edge = '#edges tr[data-edge="edge:flow:refresh_report->lifecycle:refresh_report"]'
    assert await page.locator(edge).count() == 1
    # And a sensor's row links to its page
    await row.locator("a").click()
    await page.wait_for_url(f"{api.url}/sensors/daily_join.trigger")


async def test_the_flow_page_answers_json_and_refuses_an_unknown_format(deployed: Api) -> None:
    api = deployed
    async with httpx.AsyncClient(base_url=api.url) as client:
        # Without a token it asks for one
        anonymous = await client.get("/flow?format=json")
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
        graph = await client.get("/flow?format=json", headers=api.headers("read"))
        bad = await client.get("/flow?format=xml", headers=api.headers("read"))
    assert graph.status_code == 200
    body = graph.json()
    assert body["window_minutes"] == 15
    ids = {n["id"] for n in body["nodes"]}
    assert {"sensor:daily_join.trigger", "flow:daily_join", "event:orders.*"} <= ids
    assert bad.status_code == 422
    assert "?format=xml is not a form of this page: use ?format=json, or none for HTML" in bad.text


async def test_the_graph_reads_the_examples_from_either_store(
    run_store: RunStore, examples: Declarations
) -> None:
    # Given the examples deployed on SQLite or PostgreSQL
    await deploy(run_store, examples.flows, project="p", domain="d")
    await deploy_sources(run_store, examples.sources, project="p", domain="d")
    # When the graph is read
    graph = await flow_graph(run_store, project="p", domain="d", now=datetime.now(UTC))
    # Then it has every node the declarations make, and nothing else
    by_kind: dict[str, set[str]] = {}
    for node in graph.nodes:
        by_kind.setdefault(node.kind, set()).add(node.id)
    expected = expected_nodes(examples)
    assert {k: v for k, v in by_kind.items() if k in expected} == expected
    assert by_kind["note"] == {"note:payments_topic"}

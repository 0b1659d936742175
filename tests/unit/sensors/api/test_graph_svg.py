"""Drawing the event-flow graph: DOT text that keeps users' names as text, Graphviz run
without a shell and stopped when it hangs, its SVG checked and kept by the DOT text."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import pytest

from sensors.api import graph_svg
from sensors.api.graph_svg import (
    BACKSLASH_IN_TOOLTIP,
    GraphvizMissing,
    LayoutUnavailable,
    dot_text,
    draw,
    href,
    inline_svg,
    render_svg,
)
from sensors.queries.graph import FlowGraph, GraphEdge, GraphNode
from tests.fixtures.servers import pid_alive, server_missing
from tests.fixtures.waits import eventually

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
HOSTILE = 'a"b\\c <script>alert(1)</script> &lt; &amp; --> ]]> \\N é ◷ 中'


def flow_graph(nodes: list[GraphNode], edges: list[GraphEdge]) -> FlowGraph:
    at = datetime(2026, 11, 23, tzinfo=UTC)
    return FlowGraph(project="p", domain="d", at=at, window_minutes=15, nodes=nodes, edges=edges)


def two_nodes(name: str = "flow.trigger", count: int = 30) -> FlowGraph:
    sensor = GraphNode(
        id=f"sensor:{name}",
        kind="sensor",
        name=name,
        title=name,
        lines=[f"all-of: {name}", "holds 1 of 2: a"],
        tooltip=f"sensor {name}",
    )
    flow = GraphNode(id=f"flow:{name}", kind="flow", name=name, title=name)
    edge = GraphEdge(source=sensor.id, target=flow.id, count=count, per_minute=count / 15)
    return flow_graph([sensor, flow], [edge])


@pytest.fixture
def dot() -> str:
    found = shutil.which("dot")
    if found is None:
        server_missing("no Graphviz dot: apt-get install graphviz")
    return str(found)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    graph_svg._cache.clear()


def elements(svg: str) -> dict[str, ElementTree.Element]:
    """The SVG's <g> elements by id, as a browser's DOM holds them (entities decoded)."""
    root = ElementTree.fromstring(svg)
    return {g.attrib["id"]: g for g in root.iter(f"{SVG}g") if "id" in g.attrib}


def texts(element: ElementTree.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


async def test_nodes_and_edges_get_readable_ids_classes_links_and_rates(dot: str) -> None:
    svg = await render_svg(dot_text(two_nodes()))
    found = elements(svg)
    sensor = found["sensor:flow.trigger"]
    assert sensor.attrib["class"] == "node sensor"
    assert sensor.find(f"{SVG}title").text == "sensor:flow.trigger"  # type: ignore[union-attr]
    link = sensor.find(f".//{SVG}a")
    assert link is not None
    assert link.attrib[f"{XLINK}href"] == "/sensors/flow.trigger"
    assert link.attrib[f"{XLINK}title"] == "sensor flow.trigger"
    assert texts(sensor) == ["flow.trigger", "all-of: flow.trigger", "holds 1 of 2: a"]
    edge = found["edge:sensor:flow.trigger->flow:flow.trigger"]
    assert edge.attrib["class"] == "edge rate"
    assert texts(edge) == ["2/min"]
    flow_link = found["flow:flow.trigger"].find(f".//{SVG}a")
    assert flow_link is not None and flow_link.attrib[f"{XLINK}href"] == "/runs?flow=flow.trigger"
    # The page inlines it: no XML prolog, doctype or comments
    assert svg.startswith("<svg") and "<!--" not in svg and "<!DOCTYPE" not in svg


async def test_an_idle_edge_has_no_label(dot: str) -> None:
    found = elements(await render_svg(dot_text(two_nodes(count=0))))
    edge = found["edge:sensor:flow.trigger->flow:flow.trigger"]
    assert edge.attrib["class"] == "edge idle"
    assert texts(edge) == []


async def test_hostile_names_stay_text_in_labels_ids_titles_and_links(dot: str) -> None:
    # Given a sensor and a flow whose names hold quotes, backslashes, markup and entities
    graph = two_nodes(HOSTILE)
    # When it is drawn
    svg = await render_svg(dot_text(graph))
    # Then every string reads back exactly as written, and nothing became markup
    found = elements(svg)
    sensor = found[f"sensor:{HOSTILE}"]
    # (a node's DOT name is not an escString: its backslash stays doubled in the title)
    title = f"sensor:{HOSTILE}".replace("\\", "\\\\")
    assert sensor.find(f"{SVG}title").text == title  # type: ignore[union-attr]
    assert texts(sensor)[:2] == [HOSTILE, f"all-of: {HOSTILE}"]
    link = sensor.find(f".//{SVG}a")
    assert link is not None
    # (dot reads a tooltip's escapes twice, so a backslash shows as a lookalike there)
    assert link.attrib[f"{XLINK}title"] == f"sensor {HOSTILE}".replace("\\", BACKSLASH_IN_TOOLTIP)
    assert link.attrib[f"{XLINK}href"] == href(graph.nodes[0])
    assert link.attrib[f"{XLINK}href"].startswith("/sensors/a%22b%5Cc%20%3Cscript%3E")
    assert f"edge:sensor:{HOSTILE}->flow:{HOSTILE}" in found
    assert "<script" not in svg
    assert {e.tag for e in ElementTree.fromstring(svg).iter()} <= {
        f"{SVG}{tag}"
        for tag in ("svg", "g", "title", "a", "polygon", "polyline", "path", "text", "ellipse")
    }


def test_dot_text_escapes_quotes_backslashes_entities_and_line_breaks() -> None:
    graph = two_nodes('q"b\\s&x\nnext')
    text = dot_text(graph)
    assert '"sensor:q\\"b\\\\s&amp;x next"' in text
    assert 'label="q\\"b\\\\s&amp;x next\\nall-of: ' in text


async def test_a_graph_too_large_for_a_page_is_not_laid_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a graph beyond the limit, and a dot on the PATH that records being called
    calls = tmp_path / "calls"
    script(tmp_path, f'echo x >> "{calls}"\nexit 1')
    monkeypatch.setenv("PATH", str(tmp_path))
    nodes = [
        GraphNode(id=f"flow:f{i}", kind="flow", name=f"f{i}", title=f"f{i}")
        for i in range(graph_svg.MAX_NODES + 1)
    ]
    # When the page draws it, it is told why not, and dot never ran
    with pytest.raises(LayoutUnavailable, match=r"2001 nodes are more than a page lays out"):
        await draw(flow_graph(nodes, []))
    assert not calls.exists()


async def test_a_missing_dot_is_reported_for_the_page_to_fall_back(tmp_path: Path) -> None:
    with pytest.raises(GraphvizMissing, match="'/nowhere/dot' is not installed"):
        await render_svg("digraph {}", program="/nowhere/dot")


async def test_a_failing_dot_says_why(tmp_path: Path) -> None:
    program = script(tmp_path, 'echo "Error: syntax error in line 1" >&2\nexit 1')
    with pytest.raises(LayoutUnavailable, match=r"exit 1\): Error: syntax error in line 1"):
        await render_svg("digraph {", program=program)


async def test_a_dot_that_hangs_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    # Given a dot that never answers
    pid_file = tmp_path / "pid"
    program = script(tmp_path, f'echo $$ > "{pid_file}"\nexec sleep 60')
    # When the page asks for a layout, it gives up after the timeout
    with pytest.raises(LayoutUnavailable, match=r"longer than 0\.5 s"):
        await render_svg("digraph {}", program=program, timeout=0.5)
    # And the process is gone, not left behind
    pid = int(pid_file.read_text())
    await eventually(lambda: not pid_alive(pid), "the hung dot to be killed", timeout=5)


async def test_the_same_dot_text_is_laid_out_once(tmp_path: Path, dot: str) -> None:
    # Given a dot that counts its calls
    calls = tmp_path / "calls"
    program = script(tmp_path, f'echo x >> "{calls}"\nexec "{dot}" "$@"')
    text = dot_text(two_nodes())
    # When the page is drawn twice with nothing changed, and once with a changed rate
    first = await render_svg(text, program=program)
    again = await render_svg(text, program=program)
    await render_svg(dot_text(two_nodes(count=45)), program=program)
    # Then dot ran for the two different texts only
    assert first == again
    assert calls.read_text().count("x") == 2


async def test_pages_asking_for_the_same_layout_at_once_share_one_dot(
    tmp_path: Path, dot: str
) -> None:
    # Given a dot that counts its calls
    calls = tmp_path / "calls"
    program = script(tmp_path, f'echo x >> "{calls}"\nexec "{dot}" "$@"')
    text = dot_text(two_nodes(count=7))
    # When ten pages refresh on the same change together
    drawn = await asyncio.gather(*(render_svg(text, program=program) for _ in range(10)))
    # Then they all got the drawing, from one run of dot
    assert len(set(drawn)) == 1 and "<svg" in drawn[0]
    assert calls.read_text().count("x") == 1


@pytest.mark.parametrize(
    "svg",
    [
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><g onload="alert(1)"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        '<a xlink:href="javascript:alert(1)"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        '<a xlink:href="//evil.example/"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><a href="/\\evil.example/"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><g style="x"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><g/></svg><p>after</p>',
        "no svg at all",
    ],
)
def test_svg_beyond_what_dot_writes_is_refused(svg: str) -> None:
    with pytest.raises(LayoutUnavailable):
        inline_svg(svg)


def script(folder: Path, body: str) -> str:
    """An executable stand-in for dot."""
    path = folder / "dot"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)

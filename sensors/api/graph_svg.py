"""Drawing the event-flow graph: DOT text for Graphviz ``dot``, and its SVG for the page.

``dot`` runs as a child process, without a shell, with the DOT text on stdin and a
timeout; its SVG is kept by the DOT text's hash, so a page that refreshes with
nothing changed costs no layout. Names come from users, so every string is
escaped for DOT, links are built from percent-encoded names only, and the SVG is
checked against what ``dot`` writes (no script, no event handler, links within
the page's own site) before the page inlines it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
from collections import OrderedDict
from typing import Final
from urllib.parse import quote
from xml.etree import ElementTree

from sensors.queries.graph import FlowGraph, GraphEdge, GraphNode, NodeKind, rate_text

__all__ = [
    "BACKSLASH_IN_TOOLTIP",
    "INSTALL_HINT",
    "KIND_STYLES",
    "MAX_NODES",
    "LayoutUnavailable",
    "GraphvizMissing",
    "dot_text",
    "draw",
    "href",
    "inline_svg",
    "legend",
    "rate",
    "render_svg",
]

INSTALL_HINT: Final = (
    "install Graphviz to see the graph drawn: apt-get install graphviz (Debian/Ubuntu), "
    "brew install graphviz (macOS)"
)
TIMEOUT = 10.0  # seconds dot may take before it is killed
BACKSLASH_IN_TOOLTIP: Final = "\u29f5"  # REVERSE SOLIDUS OPERATOR, a backslash's lookalike
_CACHED = 16  # SVGs kept, by DOT text
MAX_NODES = 2_000  # beyond this, dot takes longer than a page can wait: a table instead

KIND_STYLES: Final[dict[NodeKind, dict[str, str]]] = {
    "source": {"shape": "cylinder", "fillcolor": "#e3f2fd", "color": "#1a73e8"},
    "event": {"shape": "ellipse", "fillcolor": "#ffffff", "color": "#555555"},
    "wildcard": {"shape": "ellipse", "fillcolor": "#f3e5f5", "color": "#8e24aa", "style": "dashed"},
    "sensor": {"shape": "box", "fillcolor": "#fff8e1", "color": "#b06000"},
    "schedule": {"shape": "box", "fillcolor": "#fff8e1", "color": "#b06000", "peripheries": "2"},
    "flow": {"shape": "box3d", "fillcolor": "#e6f4ea", "color": "#137333"},
    "lifecycle": {"shape": "hexagon", "fillcolor": "#e6f4ea", "color": "#137333"},
    "note": {"shape": "note", "fillcolor": "#f4f4f4", "color": "#888888", "fontcolor": "#555555"},
}
"""How each kind of node is drawn; the page's legend shows the same colours."""

_KIND_WORDS: Final[dict[NodeKind, str]] = {
    "source": "event source",
    "event": "event name",
    "wildcard": "event names by wildcard",
    "sensor": "sensor: kind, condition, what it holds",
    "schedule": "schedule (a clock)",
    "flow": "flow",
    "lifecycle": "a flow's finish (lifecycle event)",
    "note": "event names computed from each message",
}


class LayoutUnavailable(Exception):
    """Raised when the graph cannot be drawn; the page shows it as a table instead."""


class GraphvizMissing(LayoutUnavailable):
    """Raised when Graphviz's ``dot`` is not installed."""


def legend() -> list[tuple[NodeKind, str, dict[str, str]]]:
    """Each kind of node: its kind, what it means, and its style."""
    return [(kind, _KIND_WORDS[kind], style) for kind, style in KIND_STYLES.items()]


def href(node: GraphNode) -> str | None:
    """Where a click on ``node`` goes: a sensor's page, a flow's runs, the recent events."""
    name = quote(node.name, safe="")
    if node.kind in ("sensor", "schedule"):
        return f"/sensors/{name}"
    if node.kind == "flow":
        return f"/runs?flow={name}"
    if node.kind in ("event", "wildcard", "lifecycle"):
        return "/#events"
    if node.kind == "source":
        return "#sources"
    return None


def rate(edge: GraphEdge, minutes: int) -> str:
    """``12/min``, ``0.47/min``; empty when nothing passed."""
    return rate_text(edge.count, minutes) if edge.count else ""


def _text(value: str) -> str:
    """A user's string as text inside a quoted DOT string: shown as written, never markup.

    ``\\`` and ``"`` are DOT's escapes; dot reads ``&...;`` as an entity, so ``&`` is
    written as one; control characters would end a line or the document.
    """
    value = re.sub(r"[\x00-\x1f\x7f]", " ", value)
    return value.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')


def _tooltip(value: str) -> str:
    """A tooltip as :func:`_text`, with each backslash shown as a lookalike: dot reads a
    tooltip's escapes twice (2.43), so ``\\N`` would become the node's name however escaped."""
    return _text(value.replace("\\", BACKSLASH_IN_TOOLTIP))


def _attrs(**values: str) -> str:
    return ", ".join(f'{key}="{value}"' for key, value in values.items())


def dot_text(graph: FlowGraph) -> str:
    """The graph in the DOT language, left to right: sources first, downstream flows last."""
    lines = [
        "digraph flow {",
        '  graph [rankdir="LR", nodesep="0.25", ranksep="0.6", fontname="Helvetica"];',
        '  node [fontname="Helvetica", fontsize="11", style="filled", margin="0.12,0.06"];',
        '  edge [fontname="Helvetica", fontsize="10", color="#777777", fontcolor="#333333"];',
    ]
    for node in graph.nodes:
        style = dict(KIND_STYLES[node.kind])
        style["style"] = ",".join(["filled", *filter(None, [style.get("style")])])
        if node.kind == "sensor":
            style["style"] += ",rounded"
        label = "\\n".join(_text(line) for line in [node.title, *node.lines])
        link = href(node)
        attrs = _attrs(
            id=_text(node.id),
            label=label,
            tooltip=_tooltip(node.tooltip or node.title),
            **{"class": node.kind},
            **({"URL": link} if link else {}),
            **style,
        )
        lines.append(f'  "{_text(node.id)}" [{attrs}];')
    for edge in graph.edges:
        label = ", ".join(filter(None, [edge.label, rate(edge, graph.window_minutes)]))
        extra: dict[str, str] = {"style": "dashed"} if edge.possible else {}
        if edge.count:
            extra |= {"penwidth": f"{min(1 + edge.per_minute / 10, 4):.2g}", "color": "#1a73e8"}
        tooltip = f"{edge.source} → {edge.target}" + (f": {label}" if label else "")
        if edge.possible:
            tooltip += " (the source's event names could give it; none seen yet)"
        attrs = _attrs(
            id=_text(edge.id),
            label=_text(label),
            tooltip=_tooltip(tooltip),
            **{"class": "possible" if edge.possible else "rate" if edge.count else "idle"},
            **extra,
        )
        lines.append(f'  "{_text(edge.source)}" -> "{_text(edge.target)}" [{attrs}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


_cache: OrderedDict[str, str] = OrderedDict()
_running: dict[str, asyncio.Future[str]] = {}  # layouts under way, by DOT text hash


async def draw(graph: FlowGraph) -> str:
    """The graph as SVG to inline in the page.

    Raises:
        GraphvizMissing: dot is not installed.
        LayoutUnavailable: the graph is too large to lay out for a page, or dot failed.
    """
    if len(graph.nodes) > MAX_NODES:
        raise LayoutUnavailable(
            f"{len(graph.nodes)} nodes are more than a page lays out ({MAX_NODES})"
        )
    return await render_svg(dot_text(graph))


async def render_svg(dot: str, *, program: str = "dot", timeout: float = TIMEOUT) -> str:
    """The SVG that ``dot`` lays ``dot`` out as, ready to inline in a page.

    Raises:
        GraphvizMissing: ``program`` is not installed.
        LayoutUnavailable: it failed, took longer than ``timeout`` seconds, or wrote
            something other than the SVG it writes.
    """
    data = dot.encode("utf-8", "replace")
    key = hashlib.sha256(data).hexdigest()
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    path = shutil.which(program)
    if path is None:
        raise GraphvizMissing(f"Graphviz's {program!r} is not installed")
    # Pages that refresh on the same change ask for the same layout at once: one dot runs,
    # and they all wait for it. (Shielded: one page going away does not stop the others';
    # the timeout still bounds it.)
    running = _running.get(key)
    if running is None:
        running = _running[key] = asyncio.ensure_future(_layout(path, data, timeout))
        running.add_done_callback(lambda _: _running.pop(key, None))
    svg = await asyncio.shield(running)
    _cache[key] = svg
    while len(_cache) > _CACHED:
        _cache.popitem(last=False)
    return svg


async def _layout(path: str, data: bytes, timeout: float) -> str:
    process = await asyncio.create_subprocess_exec(
        path,
        "-Tsvg",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(data), timeout)
    except TimeoutError:
        raise LayoutUnavailable(f"dot took longer than {timeout:g} s and was stopped") from None
    finally:
        if process.returncode is None:  # timed out, or the server is stopping
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0:
        why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise LayoutUnavailable(f"dot failed (exit {process.returncode}): {why[0]}")
    return inline_svg(out.decode("utf-8", "replace"))


_SVG = "{http://www.w3.org/2000/svg}"
_ON_SITE = re.compile(r"(/(?!/)|#)[^\s<>\"'\\]*")  # a path or a fragment of this site
_ELEMENTS = frozenset(
    f"{_SVG}{tag}"
    for tag in ("svg", "g", "title", "a", "polygon", "polyline", "ellipse", "path", "text")
)


def inline_svg(svg: str) -> str:
    """``dot``'s SVG without its XML prolog, doctype and comments, once it is checked.

    Raises:
        LayoutUnavailable: it holds an element or attribute ``dot`` does not write
            (a script, an event handler) or a link off this site.
    """
    start = svg.find("<svg")
    if start < 0:
        raise LayoutUnavailable("dot wrote no SVG")
    svg = re.sub(r"<!--.*?-->\n?", "", svg[start:], flags=re.DOTALL)
    try:
        root = ElementTree.fromstring(svg)
    except ElementTree.ParseError as exc:
        raise LayoutUnavailable(f"dot wrote SVG that does not parse: {exc}") from None
    for element in root.iter():
        if element.tag not in _ELEMENTS:
            raise LayoutUnavailable(f"dot's SVG holds an unexpected element {element.tag}")
        for name, value in element.attrib.items():
            local = name.rsplit("}", 1)[-1]
            if local.lower().startswith("on") or local == "style":
                raise LayoutUnavailable(f"dot's SVG holds an unexpected attribute {local}")
            if local == "href" and not _ON_SITE.fullmatch(value):
                raise LayoutUnavailable(f"dot's SVG links off the site: {value!r}")
    return svg.strip()

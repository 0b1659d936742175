"""The event-flow page (``/flow``): what triggers what, drawn as a graph.

The read model is :func:`sensors.queries.graph.flow_graph`; Graphviz ``dot`` lays it
out (:mod:`sensors.api.graph_svg`) and the page inlines the SVG, with no script.
Without ``dot`` the page shows the same graph as a table, and says how to install it.
``?format=json`` returns the graph itself.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sensors.api.graph_svg import (
    INSTALL_HINT,
    GraphvizMissing,
    LayoutUnavailable,
    draw,
    href,
    legend,
    rate,
)
from sensors.api.web import page_auth, templates
from sensors.queries.graph import flow_graph

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

_FORMATS = ("html", "json")


@router.get("/flow", response_class=HTMLResponse)
async def flow(request: Request) -> Response:
    state = page_auth(request)
    if isinstance(state, RedirectResponse):
        return state
    form = request.query_params.get("format", "html")
    if form not in _FORMATS:
        message = f"?format={form} is not a form of this page: use ?format=json, or none for HTML"
        return templates.TemplateResponse(request, "flow.html", {"error": message}, status_code=422)
    s = state.settings
    graph = await flow_graph(state.store, project=s.project, domain=s.domain, now=datetime.now(UTC))
    if form == "json":
        return JSONResponse(graph.model_dump(mode="json"))
    svg = problem = None
    try:
        svg = await draw(graph)
    except GraphvizMissing:
        problem = INSTALL_HINT
    except LayoutUnavailable as exc:
        log.warning("the event-flow graph is shown as a table: %s", exc)
        problem = f"the graph could not be drawn ({exc}); here it is as a table"
    return templates.TemplateResponse(
        request,
        "flow.html",
        {
            "graph": graph,
            "svg": svg,
            "problem": problem,
            "legend": legend(),
            "nodes": [(node, href(node)) for node in graph.nodes],
            "edges": [(edge, rate(edge, graph.window_minutes)) for edge in graph.edges],
            "sources": [node for node in graph.nodes if node.kind == "source"],
        },
    )

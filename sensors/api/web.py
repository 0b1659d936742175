"""The web page: sensors, recent events and runs, a run's timeline, and signal forms.

Server-rendered with Jinja2, no build step and no script. It needs a token, like
the API: the login form keeps it in an HttpOnly, SameSite=Strict cookie, which
the API routes accept in place of the Authorization header. Forms post only
from this page's origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from sensors.api.auth import AuthError
from sensors.api.state import TOKEN_COOKIE, ApiState, state_of
from sensors.queries.runs import RunDetail, run_detail
from sensors.queries.sensors import progress_lines, sensor_statuses
from sensors.runs.signals import give_signal, list_signals, waiting_for
from triggers.errors import TripwireError
from triggers.waits import parse_value

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _page_auth(request: Request) -> ApiState | RedirectResponse:
    state = state_of(request)
    try:
        state.authorize(request, "read")
    except AuthError as exc:
        if exc.status == 401:
            return RedirectResponse("/login", status_code=303)
        raise
    return state


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"message": None})


@router.post("/login")
async def login(request: Request, token: Annotated[str, Form(max_length=500)] = "") -> Response:
    state = state_of(request)
    try:
        state.auth.bearer(f"Bearer {token}").require("read")
    except AuthError as exc:
        return templates.TemplateResponse(
            request, "login.html", {"message": exc.message}, status_code=exc.status
        )
    page = RedirectResponse("/", status_code=303)
    page.set_cookie(
        TOKEN_COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return page


@router.post("/logout")
async def logout(request: Request) -> Response:
    page = RedirectResponse("/login", status_code=303)
    page.delete_cookie(TOKEN_COOKIE)
    return page


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> Response:
    state = _page_auth(request)
    if isinstance(state, RedirectResponse):
        return state
    s = state.settings
    sensors = await sensor_statuses(state.store, project=s.project, domain=s.domain)
    runs = await state.store.list_runs(project=s.project, domain=s.domain, limit=50)
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "project": s.project,
            "domain": s.domain,
            "sensors": sensors,
            "progress": {s.sensor.sensor_id: progress_lines(s.sensor, s.progress) for s in sensors},
            "events": state.recent.latest(50),
            "runs": runs,
        },
    )


@router.get("/runs/{project}/{domain}/{name}", response_class=HTMLResponse)
async def run_page(request: Request, project: str, domain: str, name: str) -> Response:
    state = _page_auth(request)
    if isinstance(state, RedirectResponse):
        return state
    try:
        detail = await run_detail(state.store, name, project=project, domain=domain)
    except TripwireError as exc:
        return templates.TemplateResponse(
            request, "missing.html", {"message": str(exc)}, status_code=404
        )
    signals = await list_signals(state.store, project=project, domain=domain, run_name=name)
    return templates.TemplateResponse(
        request,
        "run.html",
        {
            "detail": detail,
            "run": detail.run,
            "signals": signals,
            "message": request.query_params.get("message"),
            "timeline": _timeline(detail),
            "segments": _segments(detail),
        },
    )


@router.post("/runs/{project}/{domain}/{name}/events/{event}/signal")
async def signal_form(
    request: Request,
    project: str,
    domain: str,
    name: str,
    event: str,
    value: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    _same_origin(request)
    state = state_of(request)
    state.authorize(request, "publish").require_project(project)
    back = f"/runs/{quote(project)}/{quote(domain)}/{quote(name)}"
    where = {"project": project, "domain": domain, "run_name": name, "name": event}
    try:
        waiting = await waiting_for(state.store, **where)
        await give_signal(state.store, **where, value=parse_value(value, waiting.expected_type))
        message = f"signalled {event} = {value}"
    except (ValueError, TypeError, TripwireError) as exc:
        message = f"not signalled: {exc}"
    return RedirectResponse(f"{back}?message={quote(message)}", status_code=303)


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.url.netloc:
        raise AuthError(403, "forbidden", "this form posts only from the tripwire page itself")


def _timeline(detail: RunDetail) -> list[dict[str, Any]]:
    """The run's phase changes with the time since the first, for the timeline bar."""
    if not detail.history:
        return []
    start = detail.history[0].at
    last = detail.history[-1].at
    span = max((last - start).total_seconds(), 0.001)
    return [
        {
            "what": "run" if change.attempt is None else f"attempt #{change.attempt}",
            "phase": change.phase,
            "at": change.at,
            "offset": (change.at - start).total_seconds(),
            "left": round(100 * (change.at - start).total_seconds() / span, 2),
        }
        for change in detail.history
    ]


def _segments(detail: RunDetail) -> list[dict[str, Any]]:
    """The run's own phases as bar segments: where each starts and how wide, in percent."""
    changes = [c for c in detail.history if c.attempt is None]
    if not changes:
        return []
    start, end = changes[0].at, changes[-1].at
    span = max((end - start).total_seconds(), 0.001)
    shown = []
    for change, following in zip(changes, [*changes[1:], None], strict=True):
        until = following.at if following is not None else end
        width = max(100 * (until - change.at).total_seconds() / span, 0.5)
        if following is None:
            width = 3.0  # a final phase has no end: a short cap at the right edge
        left = min(100 * (change.at - start).total_seconds() / span, 100 - width)
        shown.append({"phase": change.phase, "left": round(left, 2), "width": round(width, 2)})
    return shown

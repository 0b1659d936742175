"""The web page: sensors, recent events and runs, a run's timeline, and signal forms.

Server-rendered with Jinja2, no build step. The one script, inline in base.html,
only keeps a page current (:mod:`sensors.api.live`); every page works without it.
It needs a token, like the API: the login form keeps it in an HttpOnly,
SameSite=Strict cookie, which the API routes accept in place of the Authorization
header. Forms post only from this page's origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sensors.api.auth import AuthError
from sensors.api.state import TOKEN_COOKIE, ApiState, state_of
from sensors.api.timeline import marks, segments
from sensors.queries.runs import run_detail
from sensors.queries.sensors import dependency_state, key_line, progress_lines, sensor_statuses
from sensors.runs.import_problems import import_problems
from sensors.runs.models import RunRecord
from sensors.runs.signals import give_signal, list_signals, waiting_for
from triggers.error_text import with_code
from triggers.errors import TripwireError
from triggers.waits import parse_value

__all__ = [
    "PageSecurity",
    "content_security_policy",
    "page_auth",
    "router",
    "templates",
    "triggered_by",
]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def content_security_policy() -> str:
    """What the pages may load and run: their own origin, and of scripts only the one in
    base.html, by its hash. So markup that reached a page by mistake (a name in the graph,
    a payload) cannot run script, and no page can be framed by another site."""
    base = (Path(__file__).parent / "templates" / "base.html").read_text()
    scripts = re.findall(r"<script>(.*?)</script>", base, re.DOTALL)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in scripts
    )
    scripts_allowed = hashes or "'none'"
    return (
        f"default-src 'self'; script-src {scripts_allowed}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


class PageSecurity:
    """ASGI middleware: the pages' Content-Security-Policy on every HTML response.

    Pure ASGI rather than Starlette's BaseHTTPMiddleware, which would buffer the
    server-sent events of ``/live`` and miss their client going away."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._policy = content_security_policy().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if kind.startswith(b"text/html"):
                    headers.append((b"content-security-policy", self._policy))
                    headers.append((b"x-content-type-options", b"nosniff"))
                    message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, secured)


def _json(value: Any) -> str:
    """A value as JSON (``true``, ``null``), not as Python shows it (``True``, ``None``)."""
    return json.dumps(value, default=str, ensure_ascii=False)


def triggered_by(run: RunRecord) -> list[str]:
    """What made the run, in lines: its events, its schedule's tick, or a person."""
    if run.events:
        return [f"{e.get('name')} {e.get('id')}" for e in run.events]
    if run.scheduled_at is not None:
        return [f"by schedule, tick {run.scheduled_at.isoformat(timespec='seconds')}"]
    info = run.trigger_info or {}
    if info.get("kind") == "absence":
        return [f"by absence: none in {info['window_start']} .. {info['window_end']}"]
    return ["created by hand"]


templates.env.filters["json"] = _json
templates.env.globals.update(
    with_code=with_code,
    triggered_by=triggered_by,
    dependency_state=dependency_state,
    key_line=key_line,
)


def page_auth(request: Request) -> ApiState | RedirectResponse:
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
    state = page_auth(request)
    if isinstance(state, RedirectResponse):
        return state
    s = state.settings
    sensors = await sensor_statuses(state.store, project=s.project, domain=s.domain)
    runs = await state.store.list_runs(project=s.project, domain=s.domain, limit=50)
    problems = await import_problems(state.store, project=s.project, domain=s.domain)
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "project": s.project,
            "domain": s.domain,
            "problems": problems,
            "sensors": sensors,
            "progress": {s.sensor.sensor_id: progress_lines(s.sensor, s.progress) for s in sensors},
            "events": state.recent.latest(50),
            "runs": runs,
        },
    )


@router.get("/runs/{project}/{domain}/{name}", response_class=HTMLResponse)
async def run_page(request: Request, project: str, domain: str, name: str) -> Response:
    state = page_auth(request)
    if isinstance(state, RedirectResponse):
        return state
    try:
        detail = await run_detail(state.store, name, project=project, domain=domain)
    except TripwireError as exc:
        return templates.TemplateResponse(
            request, "missing.html", {"message": str(exc)}, status_code=404
        )
    signals = await list_signals(state.store, project=project, domain=domain, run_name=name)
    now = datetime.now(UTC)
    return templates.TemplateResponse(
        request,
        "run.html",
        {
            "detail": detail,
            "run": detail.run,
            "signals": signals,
            "message": request.query_params.get("message"),
            "timeline": marks(detail, now),
            "segments": segments(detail, now),
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
        parsed = parse_value(value, waiting.expected_type)
        await give_signal(state.store, **where, value=parsed)
        message = f"signalled {event} = {_json(parsed)}"
    except (ValueError, TypeError, TripwireError) as exc:
        message = f"not signalled: {exc}"
    return RedirectResponse(f"{back}?message={quote(message)}", status_code=303)


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.url.netloc:
        raise AuthError(403, "forbidden", "this form posts only from the tripwire page itself")

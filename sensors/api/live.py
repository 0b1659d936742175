"""Pages that keep themselves current (``/live``), and the runs list (``/runs``).

``/live`` is a stream of server-sent events (``text/event-stream``) that says when what the
pages show has changed: runs and their phases and signals, what the workers report of their
sensors, flow files that fail to import, and events on the topic. The script in
``base.html`` then fetches the page again and swaps in its ``<main id="live">``.

One read of the store a second (:func:`sensors.queries.changes.change_marks`) serves every
stream of the server, and none is made while no page is open. A plain
:class:`~starlette.responses.StreamingResponse` carries the stream: it is one event name
and a comment now and then, and sse-starlette's way of learning that the server stops (it
patches uvicorn's signal handler) does not reach a server embedded in a worker, which
handles the signals itself; :func:`close_streams` does it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sensors.api.recent import RecentEvents
from sensors.api.state import ApiState
from sensors.api.web import page_auth, templates
from sensors.queries.changes import STORE_TOPICS, change_marks
from sensors.queries.runs import RunQuery, flow_names, parse_run_query, runs_page
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from triggers.settings import Settings

__all__ = ["HEARTBEAT_SECONDS", "MAX_STREAMS", "POLL_SECONDS", "TOPICS", "close_streams", "router"]

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

TOPICS = (*STORE_TOPICS, "events")
"""What a page may follow (``data-live-on`` in base.html): ``events`` are those on the
topic, which the API tails in memory (:class:`~sensors.api.recent.RecentEvents`)."""
POLL_SECONDS = 1.0
"""How often the store is read while a page is open, and so how late a page can be."""
HEARTBEAT_SECONDS = 15.0
"""A comment after this long without a message, so that proxies keep the stream open."""
MAX_STREAMS = 100
"""Streams one server keeps open at once; more are refused (503), and those pages stay
as they are until reloaded."""
READ_TIMEOUT = 3.0
"""Seconds a read of the store may take before it counts as failed (the marks stay)."""
RETRY_MS = 2000
"""How long a browser waits before it reconnects a stream that dropped."""


class Changes:
    """What changed, read for all the streams of one app: the store at most once in
    ``max_age`` seconds, however many streams ask."""

    def __init__(self) -> None:
        self.marks: dict[str, str] = {}
        """Per topic, a digest of its marks at the last read."""
        self.changed_at: dict[str, float | None] = {}
        """Per topic, when a read first saw its marks move (monotonic); None until then."""
        self.streams = 0
        self.closing = asyncio.Event()
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self._failing = False

    async def read(
        self, store: RunStore, settings: Settings, recent: RecentEvents, *, max_age: float
    ) -> dict[str, str]:
        """The marks (of ``settings``' project and domain), read again if the last read is
        ``max_age`` seconds old."""
        if time.monotonic() - self._read_at < max_age:
            return self.marks
        async with self._lock:
            if time.monotonic() - self._read_at >= max_age:  # no other stream read meanwhile
                self._note(await self._store_marks(store, settings), _events_mark(recent))
        return self.marks

    async def _store_marks(self, store: RunStore, settings: Settings) -> dict[str, str] | None:
        where = {"project": settings.project, "domain": settings.domain}
        try:
            # Bounded: the streams wait on this read, and so would a server that stops.
            async with asyncio.timeout(READ_TIMEOUT):
                found = await change_marks(store, **where)
        except Exception:
            if not self._failing:
                log.warning("live pages: cannot read the store; trying every second", exc_info=True)
            self._failing = True
            return None
        if self._failing:
            log.info("live pages: the store answers again")
        self._failing = False
        return {topic: _digest(found[topic]) for topic in STORE_TOPICS}

    def _note(self, store: dict[str, str] | None, events: str) -> None:
        now = time.monotonic()
        self._read_at = now
        fresh = {t: self.marks.get(t, "-") for t in STORE_TOPICS} if store is None else store
        fresh["events"] = events
        for topic, mark in fresh.items():
            if topic not in self.marks:
                # What changed before the first read is taken as on the pages: refreshing
                # every page that opens first on a server would cost a render for little.
                self.changed_at[topic] = None
            elif self.marks[topic] != mark:
                self.changed_at[topic] = now
        self.marks = fresh

    def ages(self) -> dict[str, float | None]:
        """Per topic, seconds since a read saw it change (a page that is older may not show
        the change), or None if none has since the first."""
        now = time.monotonic()
        return {t: None if (at := self.changed_at.get(t)) is None else now - at for t in TOPICS}


def _digest(values: Any) -> str:
    return hashlib.blake2b(repr(values).encode(), digest_size=6).hexdigest()


def _events_mark(recent: RecentEvents) -> str:
    newest = recent.latest(1)
    return _digest((newest[0].get("id"), newest[0].get("received")) if newest else None)


def _changes(app: Starlette) -> Changes:
    changes: Changes | None = getattr(app.state, "tripwire_live", None)
    if changes is None:
        changes = app.state.tripwire_live = Changes()
    return changes


def close_streams(app: Starlette) -> None:
    """End the app's open ``/live`` streams within a moment, and refuse new ones (503).

    Call it before stopping the server: uvicorn waits for open responses to end before
    it shuts down, and a stream does not end by itself."""
    _changes(app).closing.set()


def _version(marks: dict[str, str]) -> str:
    """The marks as one event id: a browser sends it back when it reconnects."""
    return ".".join(marks.get(t, "-") for t in TOPICS)


def _since(text: str | None) -> dict[str, str] | None:
    """An event id of :func:`_version` as marks (None: no id; ``{}``: not one of ours)."""
    if text is None:
        return None
    parts = text.split(".")
    return dict(zip(TOPICS, parts, strict=True)) if len(parts) == len(TOPICS) else {}


def _message(event: str, marks: dict[str, str], **data: Any) -> str:
    version = _version(marks)
    text = json.dumps({"version": version, **data}, separators=(",", ":"))
    return f"id: {version}\nevent: {event}\ndata: {text}\n\n"


async def _stream(
    changes: Changes, state: ApiState, since: dict[str, str] | None
) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    sources = (state.store, state.settings, state.recent)
    marks = await changes.read(*sources, max_age=0.25)
    if since is None:
        # A page just loaded: it knows when it was rendered, the server when things changed.
        ages = {t: None if age is None else round(age, 3) for t, age in changes.ages().items()}
        yield _message("hello", marks, ages=ages)
    elif changed := [t for t in TOPICS if since.get(t) != marks[t]]:
        yield _message("change", marks, changed=changed)
    written = time.monotonic()
    while not changes.closing.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_SECONDS):
                await changes.closing.wait()
                return
        before, marks = marks, await changes.read(*sources, max_age=POLL_SECONDS * 0.9)
        if changed := [t for t in TOPICS if before[t] != marks[t]]:
            yield _message("change", marks, changed=changed)
        elif time.monotonic() - written >= HEARTBEAT_SECONDS:
            yield ": still here\n\n"
        else:
            continue
        written = time.monotonic()


class _Stream(StreamingResponse):
    """A stream that gives its place back when it ends, however it ends (the client went
    away and Starlette cancelled it, or the server is closing)."""

    def __init__(self, changes: Changes, content: AsyncIterator[str]) -> None:
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._changes = changes
        changes.streams += 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._changes.streams -= 1


@router.get("/live")
async def live(request: Request) -> Response:
    """Server-sent events: ``hello`` first, then ``change`` with the topics that changed.

    ``since`` (or the Last-Event-ID header a browser sends when it reconnects) is the
    ``version`` a page last saw; a change since then is sent at once."""
    state = page_auth(request)
    if isinstance(state, RedirectResponse):
        return PlainTextResponse("log in first: the live updates need the page's token", 401)
    changes = _changes(request.app)
    if changes.closing.is_set():
        return PlainTextResponse("the server is shutting down", 503)
    if changes.streams >= MAX_STREAMS:
        message = (
            f"{changes.streams} pages follow this server already, its most; close some, "
            "or reload this one to see it current"
        )
        return PlainTextResponse(message, 503, headers={"Retry-After": "30"})
    since = request.headers.get("last-event-id") or request.query_params.get("since")
    return _Stream(changes, _stream(changes, state, _since(since)))


@router.get("/runs", response_class=HTMLResponse)
async def runs_list(request: Request) -> Response:
    """The runs list, filtered by flow, phase and creation time, newest first."""
    state = page_auth(request)
    if isinstance(state, RedirectResponse):
        return state
    s = state.settings
    now = datetime.now(UTC)
    context: dict[str, Any] = {
        "project": s.project,
        "domain": s.domain,
        "phases": [p.value for p in WorkflowPhase if p != WorkflowPhase.UNDEFINED],
        "flows": await flow_names(state.store, project=s.project, domain=s.domain),
        "params": request.query_params,
        "now": now,
    }
    try:
        query = parse_run_query(request.query_params.multi_items(), now)
    except ValueError as exc:
        context |= {"problem": str(exc), "query": RunQuery(), "page": None}
        return templates.TemplateResponse(request, "runs.html", context, status_code=422)
    page = await runs_page(state.store, query, project=s.project, domain=s.domain)
    context |= {"problem": None, "query": query, "page": page}
    return templates.TemplateResponse(request, "runs.html", context)

"""The HTTP API's application: its lifetime, its routers, and errors as JSON bodies.

:func:`create_app` builds the FastAPI app for ``tripwire api`` and ``tripwire
dev``. Routes only translate (:mod:`sensors.api.routes`, :mod:`sensors.api.runs`,
:mod:`sensors.api.web`);
errors become JSON bodies ``{"error": code, "message": text}`` with the right
status, and never a 500 for anything a client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from sensors.api import flow_page, live, routes, runs, sensor_page, signals, web
from sensors.api.auth import Authenticator, AuthError, RateLimiter
from sensors.api.ingest import BadRequest
from sensors.api.metrics import Metrics
from sensors.api.recent import RecentEvents
from sensors.api.state import ApiState, BrokerUnavailable, ErrorBody, RateLimited
from sensors.runs.store import RunStore
from triggers.errors import (
    ConfigurationError,
    PublishError,
    RunNotFoundError,
    SignalError,
    SignalNotFoundError,
    StoreError,
    TriggerError,
)
from triggers.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """The API and web page, connected to the store and broker that ``settings`` name."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await RunStore.open(settings.store_url)
        state = ApiState(
            settings=settings,
            store=store,
            auth=Authenticator(settings),
            limiter=RateLimiter(settings.api_rate_limit, settings.api_rate_burst),
            metrics=Metrics(),
            recent=RecentEvents(settings),
        )
        if not state.auth.configured:
            log.warning(
                "no API token is configured (TRIPWIRE_API_TOKEN or TRIPWIRE_API_TOKENS): the API "
                "will refuse every request but /healthz and /readyz"
            )
        app.state.tripwire = state
        stop = asyncio.Event()
        tail = asyncio.create_task(state.recent.run(stop), name="tripwire recent events")
        with contextlib.suppress(BrokerUnavailable):
            await state.producer()  # connect now if we can; publishing retries otherwise
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tail, 5)
            await state.forget_producer()
            await store.close()

    app = FastAPI(
        title="tripwire",
        summary="Publish events, and see and steer the runs they trigger.",
        version="1",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorBody, "description": "A body that is not what the route takes."},
            401: {"model": ErrorBody, "description": "Missing or invalid credentials."},
            429: {"model": ErrorBody, "description": "Over the caller's request rate."},
        },
    )
    for error_type, handler in _HANDLERS.items():
        app.add_exception_handler(error_type, handler)
    app.include_router(routes.router)
    app.include_router(runs.router)
    app.include_router(signals.router)
    app.include_router(web.router)
    app.include_router(flow_page.router)
    app.include_router(sensor_page.router)
    app.include_router(live.router)
    app.add_middleware(web.PageSecurity)
    return app


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        ErrorBody(error=code, message=message).model_dump(), status_code=status, headers=headers
    )


async def _auth_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    if exc.status == 401:
        return _error(401, exc.code, exc.message, **{"WWW-Authenticate": "Bearer"})
    return _error(exc.status, exc.code, exc.message)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BadRequest)
    return _error(exc.status, exc.code, exc.message)


async def _rate_limited(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    retry = RateLimiter.retry_after(exc.wait)
    message = f"too many requests from this credential; retry after {retry}s"
    return _error(429, "rate_limited", message, **{"Retry-After": retry})


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
    )
    return _error(422, "invalid_request", problems or "the request does not fit the API")


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
    message = str(exc.detail)
    if exc.status_code == 400 and "parsing the body" in message:
        message = "the body is not valid JSON; send a JSON object as the route describes"
    return _error(
        exc.status_code, codes.get(exc.status_code, "http_error"), message, **(exc.headers or {})
    )


def _tripwire(status: int, code: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _error(status, code, str(exc))

    return handle


_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[JSONResponse]]] = {
    AuthError: _auth_error,
    BadRequest: _bad_request,
    RateLimited: _rate_limited,
    RequestValidationError: _validation,
    HTTPException: _http,
    RunNotFoundError: _tripwire(404, "not_found"),
    SignalNotFoundError: _tripwire(404, "not_found"),
    SignalError: _tripwire(409, "conflict"),
    ConfigurationError: _tripwire(409, "conflict"),
    TriggerError: _tripwire(422, "invalid_parameters"),
    BrokerUnavailable: _tripwire(503, "broker_unavailable"),
    PublishError: _tripwire(503, "broker_unavailable"),
    StoreError: _tripwire(503, "store_unavailable"),
}

"""The API's routes for publishing, sensors, health and metrics (runs and signals have
modules of their own). The routes are listed in docs/architecture.md."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sensors.api.auth import SIGNATURE_HEADER, Principal
from sensors.api.ingest import BATCH, STRUCTURED, BadRequest, argo_event, parse_events
from sensors.api.state import SCOPE, ApiState, BrokerUnavailable, error_responses, state_of
from sensors.queries.sensors import SensorStatus, sensor_statuses
from triggers import tracing
from triggers.envelope import encode, validate_event_name
from triggers.errors import PublishError, RunNotFoundError

__all__ = ["router"]

router = APIRouter()


class Accepted(BaseModel):
    """Published: the broker acknowledged every event."""

    id: str = Field(description="The (first) event's id.")
    ids: list[str] = Field(description="Every event's id, in order.")


# health


@router.get("/healthz", tags=["health"], summary="The process is up.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str = Field(description="`ok` when broker and database answer, else `unavailable`.")
    broker: str
    database: str


@router.get(
    "/readyz",
    tags=["health"],
    summary="Broker and database answer.",
    responses={503: {"model": Readiness}},
)
async def readyz(request: Request) -> JSONResponse:
    state = state_of(request)
    broker = database = "ok"
    try:
        producer = await state.producer()
        await asyncio.wait_for(producer.client.fetch_all_metadata(), 5)
    except (BrokerUnavailable, KafkaError, OSError, TimeoutError) as exc:
        await state.forget_producer()
        broker = f"unavailable: {exc}"
    try:
        await state.store.ping()
    except Exception as exc:
        database = f"unavailable: {exc}"
    ok = broker == database == "ok"
    body = Readiness(status="ok" if ok else "unavailable", broker=broker, database=database)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics (text exposition).",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **error_responses(403, 503)},
)
async def metrics(request: Request) -> Response:
    state = state_of(request)
    state.authorize(request, "read")
    body = await state.metrics.render(state.settings, state.store)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


# publishing

_PUBLISH_BODY = {
    "required": False,
    "content": {
        "application/json": {"schema": {"type": "object", "description": "The event's payload."}},
        STRUCTURED: {
            "schema": {
                "type": "object",
                "required": ["specversion", "id", "source", "type"],
                "description": "One structured CloudEvent 1.0; `type` is the event name.",
            }
        },
        BATCH: {
            "schema": {
                "type": "array",
                "items": {"type": "object"},
                "description": "Structured CloudEvents, all of this event name.",
            }
        },
    },
}


@router.post(
    "/api/v1/events/{name}",
    tags=["events"],
    summary="Publish an event (or a CloudEvent, or a batch of them).",
    status_code=202,
    responses=error_responses(400, 403, 413, 415, 422, 503),
    openapi_extra={"requestBody": _PUBLISH_BODY},
)
async def publish_event(
    request: Request,
    name: Annotated[str, Path(max_length=255, description="The event name.")],
    id: Annotated[str | None, Query(max_length=255, description="Event id (dedupe).")] = None,
    time_: Annotated[
        str | None,
        Query(alias="time", max_length=64, description="Event time, ISO 8601 / RFC 3339."),
    ] = None,
    source: Annotated[
        str | None,
        Query(max_length=255, description="CloudEvent source; names a signed webhook's secret."),
    ] = None,
) -> Accepted:
    """Answers 202 once the broker has acknowledged every event; ``id`` dedupes retries.

    Authenticate with a bearer token of scope ``publish``, or, for a webhook source
    configured with a secret, sign the raw body (``X-Tripwire-Signature: sha256=...``).
    """
    state = state_of(request)
    started = time.perf_counter()
    body = await _read_body(request, state.settings.api_max_body_bytes)
    principal = _publisher(state, request, source, body)
    query = {k: v for k, v in {"id": id, "source": source}.items() if v is not None}
    if time_ is not None:
        query["time"] = time_
    return await _publish(request, principal, name, body, request.headers, query, started)


@router.post(
    "/api/v1/events",
    tags=["events"],
    summary="Publish an event in Argo Events' webhook shape, as Metaflow's ArgoEvent sends it.",
    status_code=202,
    responses=error_responses(400, 403, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "description": "The event name."},
                            "payload": {
                                "type": "object",
                                "description": "The payload; its `id` is the event id "
                                "(dedupe), its `timestamp` (epoch seconds) the event time.",
                            },
                        },
                    }
                }
            },
        }
    },
)
async def publish_argo_event(request: Request) -> Accepted:
    """Answers 202 once the broker has acknowledged the event, as ``POST
    /api/v1/events/{name}`` does: point Metaflow's ``ARGO_EVENTS_WEBHOOK_URL`` here and its
    ``ArgoEvent(...).publish()`` works unchanged. Authenticate with a bearer token of scope
    ``publish`` (Metaflow's ``access_token``, or ``METAFLOW_SERVICE_HEADERS`` with
    ``ARGO_EVENTS_WEBHOOK_AUTH=service``).
    """
    state = state_of(request)
    started = time.perf_counter()
    body = await _read_body(request, state.settings.api_max_body_bytes)
    principal = state.authorize(request, "publish")
    try:
        name, payload, query = argo_event(body)
    except BadRequest as exc:
        state.metrics.rejected.labels(str(exc.status)).inc()
        raise
    as_json = {"content-type": "application/json"}  # the payload, whatever the body's type
    return await _publish(request, principal, name, payload, as_json, query, started)


async def _publish(
    request: Request,
    principal: Principal,
    name: str,
    body: bytes,
    headers: Mapping[str, str],
    query: dict[str, str],
    started: float,
) -> Accepted:
    """Publish the events of a request to ``name`` and answer once the broker has them."""
    state = state_of(request)
    try:
        validate_event_name(name)
    except PublishError as exc:
        state.metrics.rejected.labels("422").inc()
        raise BadRequest(422, "invalid_event", str(exc)) from None
    principal.require_event(name)
    try:
        events = parse_events(
            name,
            body,
            headers,
            query,
            default_source=state.settings.source,
            max_payload_bytes=state.settings.max_payload_bytes,
        )
    except BadRequest as exc:
        state.metrics.rejected.labels(str(exc.status)).inc()
        raise
    via = _via(request, principal)
    state.metrics.received.labels(via).inc(len(events))
    producer = await state.producer()
    topic = state.settings.topic_events
    # Events that carry no trace context of their own join the request's trace.
    trace = tracing.current(request.headers)
    try:
        records = [encode(tracing.stamp(e, trace, topic)) for e in events]
        sent = [await producer.send(topic, r.value, key=r.key, headers=r.headers) for r in records]
        await asyncio.wait_for(asyncio.gather(*sent), state.settings.publish_timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await state.forget_producer()
        state.metrics.rejected.labels("503").inc()
        raise BrokerUnavailable(
            f"the Kafka broker at {state.settings.kafka_bootstrap} did not acknowledge the "
            f"event(s) ({type(exc).__name__}); none may be counted as published: send them "
            "again with the same ids"
        ) from exc
    state.metrics.published.inc(len(events))
    state.metrics.publish_latency.observe(time.perf_counter() - started)
    return Accepted(id=events[0].id, ids=[e.id for e in events])


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, "too_large", _too_large(int(declared), limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "too_large", _too_large(size, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return (
        f"the body is {size} bytes or more, over the limit of {limit} "
        "(TRIPWIRE_API_MAX_BODY_BYTES); send a reference to the data instead, or smaller batches"
    )


def _publisher(state: ApiState, request: Request, source: str | None, body: bytes) -> Principal:
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is not None or (
        source is not None
        and "authorization" not in request.headers
        and source in state.settings.webhook_sources
    ):
        principal = state.auth.webhook(source or "", signature, body)
        state.limit(principal)
        return principal
    return state.authorize(request, "publish")


def _via(request: Request, principal: Principal) -> str:
    if principal.name.startswith("webhook:"):
        return "webhook"
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip()
    if content_type == BATCH:
        return "batch"
    if content_type == STRUCTURED or "ce-id" in request.headers:
        return "cloudevent"
    return "json"


# sensors


@router.get(
    "/api/v1/sensors",
    tags=["sensors"],
    summary="Each sensor: what it waits for, holds and filtered out; its last run.",
    responses=error_responses(403, 422, 503),
)
async def list_sensors(
    request: Request,
    project: Annotated[str | None, Query(pattern=SCOPE)] = None,
    domain: Annotated[str | None, Query(pattern=SCOPE)] = None,
) -> list[SensorStatus]:
    state = state_of(request)
    where = _scope(state, request, project, domain)
    return await sensor_statuses(state.store, **where)


@router.get(
    "/api/v1/sensors/{sensor_id}",
    tags=["sensors"],
    summary="One sensor (`flow.trigger`).",
    responses=error_responses(403, 404, 422, 503),
)
async def get_sensor(
    request: Request,
    sensor_id: Annotated[str, Path(max_length=400)],
    project: Annotated[str | None, Query(pattern=SCOPE)] = None,
    domain: Annotated[str | None, Query(pattern=SCOPE)] = None,
) -> SensorStatus:
    state = state_of(request)
    where = _scope(state, request, project, domain)
    found = [
        s for s in await sensor_statuses(state.store, **where) if s.sensor.sensor_id == sensor_id
    ]
    if not found:
        raise RunNotFoundError(f"no sensor {sensor_id!r}; list them at /api/v1/sensors")
    return found[0]


def _scope(
    state: ApiState, request: Request, project: str | None, domain: str | None
) -> dict[str, str]:
    where = {
        "project": project or state.settings.project,
        "domain": domain or state.settings.domain,
    }
    state.authorize(request, "read").require_project(where["project"])
    return where

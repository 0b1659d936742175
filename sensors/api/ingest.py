"""HTTP bodies into events: a JSON object, or CloudEvents (structured, batch or binary).

- ``application/json`` (or no content type) with a JSON object body: the payload
  of one event named by the path, with ``id``, ``time`` and ``source`` from the
  query string; with ``ce-*`` headers, a CloudEvent in HTTP binary mode.
- ``application/cloudevents+json``: one structured CloudEvent.
- ``application/cloudevents-batch+json``: a JSON array of them.

The ``cloudevents`` SDK parses CloudEvents; a CloudEvent's ``type`` is the
event name and must be the path's, and its ``traceparent`` and ``tracestate``
(``ce-traceparent`` in binary mode) are kept: the event stays in its own trace.
Every problem is a :class:`BadRequest` that says what was wrong and what to send.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

from triggers.envelope import Envelope, make_envelope
from triggers.errors import PublishError

__all__ = ["BATCH", "STRUCTURED", "BadRequest", "argo_event", "parse_events"]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_JSON = ("application/json", "text/json", "")
_MAX_BATCH = 1000


class BadRequest(Exception):
    """Raised for a request body or parameters that cannot become events."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def parse_events(
    name: str,
    body: bytes,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    *,
    default_source: str,
    max_payload_bytes: int,
) -> list[Envelope]:
    """The events a publish request carries, validated; see the module docs.

    Raises:
        BadRequest: 400 not JSON / not an object, 415 unknown content type, 422 an
            invalid name, time, id, or a CloudEvent that does not fit the path.
    """
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == BATCH:
        items = _json(body, "a batch")
        if not isinstance(items, list) or not items:
            raise BadRequest(
                400,
                "bad_request",
                f"a {BATCH} body must be a non-empty JSON array of CloudEvents",
            )
        if len(items) > _MAX_BATCH:
            raise BadRequest(
                413,
                "too_large",
                f"a batch holds at most {_MAX_BATCH} events, this one {len(items)}; split it",
            )
        return [
            _cloudevent(name, json.dumps(item).encode(), {}, max_payload_bytes, index=n)
            for n, item in enumerate(items)
        ]
    if content_type == STRUCTURED:
        return [_cloudevent(name, body, {}, max_payload_bytes)]
    if content_type not in _JSON and not content_type.endswith("+json"):
        raise BadRequest(
            415,
            "unsupported_media_type",
            f"content type {content_type!r} is not accepted; send application/json (the "
            f"payload), {STRUCTURED} or {BATCH}",
        )
    ce_headers = {k: v for k, v in headers.items() if k.lower().startswith("ce-")}
    if ce_headers:
        return [_cloudevent(name, body, dict(headers), max_payload_bytes)]
    payload = _json(body, "the payload") if body.strip() else {}
    if not isinstance(payload, dict):
        raise BadRequest(
            400,
            "bad_request",
            f"the body must be a JSON object (the event's payload), not a JSON "
            f'{type(payload).__name__}; wrap it, e.g. {{"value": ...}}',
        )
    return [
        _envelope(
            name,
            payload,
            id=query.get("id"),
            source=query.get("source") or default_source,
            time=query.get("time"),
            max_payload_bytes=max_payload_bytes,
        )
    ]


def argo_event(body: bytes) -> tuple[str, bytes, dict[str, str]]:
    """An event in Argo Events' webhook shape, as Metaflow's ``ArgoEvent.publish()`` sends
    it: ``{"name": NAME, "payload": {...}}``; return its name, its payload as a JSON body,
    and the id and time it carries (``payload.id``, ``payload.timestamp`` in epoch seconds)
    as :func:`parse_events` takes them.

    Raises:
        BadRequest: 400 not JSON or not that shape, 422 a key or an id or time it cannot use.
    """
    shape = 'the body is {"name": "...", "payload": {...}}'
    data = _json(body, "the body")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise BadRequest(
            400,
            "bad_request",
            f"{shape} (Argo Events' webhook, as Metaflow's ArgoEvent sends it); to publish "
            "a payload as it is, POST it to /api/v1/events/{name}",
        )
    unknown = sorted(set(data) - {"name", "payload"})
    if unknown:
        raise BadRequest(422, "invalid_event", f"unknown key(s) {unknown}: {shape}")
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise BadRequest(422, "invalid_event", f"payload must be a JSON object: {shape}")
    query = {}
    if payload.get("id") is not None:
        if not isinstance(payload["id"], str | int) or isinstance(payload["id"], bool):
            raise BadRequest(422, "invalid_event", "payload.id must be a string: the event id")
        query["id"] = str(payload["id"])
    stamp = payload.get("timestamp")
    if stamp is not None:
        if not isinstance(stamp, int | float) or isinstance(stamp, bool):
            raise BadRequest(
                422, "invalid_event", "payload.timestamp must be a number: epoch seconds"
            )
        try:
            query["time"] = datetime.fromtimestamp(stamp, UTC).isoformat()
        except (OverflowError, OSError, ValueError) as exc:
            raise BadRequest(422, "invalid_event", f"payload.timestamp {stamp}: {exc}") from None
    return data["name"], json.dumps(payload).encode(), query


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "bad_request", f"{what} is not valid JSON: {exc}") from None


def _cloudevent(
    name: str,
    body: bytes,
    headers: dict[str, str],
    max_payload_bytes: int,
    index: int | None = None,
) -> Envelope:
    where = "the CloudEvent" if index is None else f"CloudEvent #{index} of the batch"
    try:
        event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
    except Exception as exc:  # the SDK raises several kinds, all meaning "not a CloudEvent"
        raise BadRequest(
            422,
            "invalid_cloudevent",
            f"{where} is not a valid CloudEvent 1.0: {exc}; it needs specversion, id, source "
            "and type",
        ) from None
    if event.get_type() != name:
        raise BadRequest(
            422,
            "invalid_cloudevent",
            f"{where} has type {event.get_type()!r}, but is posted to event {name!r}; post it "
            f"to /api/v1/events/{event.get_type()}",
        )
    data = event.get_data()
    if isinstance(data, bytes | str):
        data = _json(data if isinstance(data, bytes) else data.encode(), f"the data of {where}")
    if data is not None and not isinstance(data, dict):
        raise BadRequest(
            400,
            "bad_request",
            f"the data of {where} must be a JSON object, not {type(data).__name__}",
        )
    time = event.get_time()
    traceparent, tracestate = event.get_extension("traceparent"), event.get_extension("tracestate")
    return _envelope(
        name,
        data or {},
        id=event.get_id(),
        source=event.get_source(),
        time=time.isoformat() if time is not None else None,
        max_payload_bytes=max_payload_bytes,
        traceparent=traceparent if isinstance(traceparent, str) else None,
        tracestate=tracestate if isinstance(tracestate, str) and tracestate else None,
    )


def _envelope(
    name: str,
    payload: dict[str, Any],
    *,
    id: str | None,
    source: str,
    time: str | None,
    max_payload_bytes: int,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Envelope:
    if id is not None and not (0 < len(id) <= 255):
        raise BadRequest(422, "invalid_event", f"id must be 1-255 characters, not {len(id)}")
    try:
        envelope, _ = make_envelope(
            name,
            payload,
            id=id,
            source=source,
            time=time,
            max_payload_bytes=max_payload_bytes,
            traceparent=traceparent,
            tracestate=tracestate,
        )
    except PublishError as exc:
        status = 413 if "over the limit" in str(exc) else 422
        code = "too_large" if status == 413 else "invalid_event"
        raise BadRequest(status, code, str(exc)) from None
    return envelope

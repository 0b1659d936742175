"""Turning one bus message into a tripwire event, as its source's declaration says (pure).

The body is decoded first: with ``format: auto`` a JSON object is the document, and
anything else (other JSON, plain text) is wrapped as ``{"body": ...}``; bytes that
are not UTF-8 become ``{"body_base64": ...}``. The ``event``, ``id`` and ``time``
expressions and the filters read that whole document; ``payload`` selects what the
event carries (all of it by default).

The event keeps the W3C trace context the message carries: a ``traceparent`` header,
a CloudEvent's ``ce_traceparent`` or ``ce-traceparent`` header, or the
``traceparent`` of a structured CloudEvent in the body.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from sensors.core.filters import failed_filters
from sensors.sources.base import Message
from triggers import tracing
from triggers.envelope import Envelope, make_envelope, validate_event_name
from triggers.errors import PublishError
from triggers.jsonpath import values_at
from triggers.sources import EventSource, Expression, parse_expression

__all__ = ["Converter", "Filtered", "Invalid"]


class Filtered(Exception):
    """The message fails the source's filters: acknowledged, counted, not published."""


class Invalid(Exception):
    """The message cannot become an event: dead-lettered with this reason, then acknowledged."""


class Converter:
    """Makes events of one source's messages."""

    def __init__(self, spec: EventSource, max_payload_bytes: int) -> None:
        self.spec = spec
        self.origin = spec.origin
        self._max = max_payload_bytes
        where = f"source {spec.name!r}"
        self._event = parse_expression(spec.event, where=where)
        self._id = parse_expression(spec.id, where=where) if spec.id else None
        self._time = parse_expression(spec.time, where=where) if spec.time else None

    def convert(self, message: Message, now: datetime | None = None) -> Envelope:
        """The event of ``message``.

        Raises:
            Filtered: the message fails the filters.
            Invalid: with the reason, when no event can be made of it.
        """
        document = self.document(message.body)
        name = self._text(self._event, "event", document, message)
        try:
            validate_event_name(name)
        except PublishError as exc:
            raise Invalid(f"event: {exc}") from None
        event_time = (
            self._when(self._text(self._time, "time", document, message))
            if self._time
            else message.time or now or datetime.now(UTC)
        )
        if self.spec.filters:
            reason = failed_filters(
                self.spec.filters, self.spec.filters_operator, document, event_time
            )
            if reason is not None:
                raise Filtered(reason)
        if self._id is not None:
            event_id = self._text(self._id, "id", document, message)
        elif message.native_id:
            event_id = f"{self.spec.name}:{message.native_id}"
        else:
            event_id = str(uuid.uuid4())
        if len(event_id) > 255:
            raise Invalid(f"id: {event_id[:40]!r}... is {len(event_id)} characters; at most 255")
        trace = _carried(message, document)
        try:
            envelope, _ = make_envelope(
                name,
                self._payload(document),
                id=event_id,
                source=self.origin,
                time=event_time,
                max_payload_bytes=self._max,
                traceparent=trace.traceparent if trace else None,
                tracestate=trace.tracestate if trace else None,
            )
        except PublishError as exc:
            raise Invalid(str(exc)) from None
        return envelope

    def document(self, body: bytes) -> dict[str, Any]:
        """The decoded body that expressions and filters read."""
        try:
            text = body.decode()
        except UnicodeDecodeError:
            if self.spec.format == "json":
                raise Invalid("the body is not UTF-8, so not JSON (format: json)") from None
            return {"body_base64": base64.b64encode(body).decode()}
        if self.spec.format == "text":
            return {"body": text}
        try:
            value = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            if self.spec.format == "json":
                raise Invalid(f"the body is not JSON (format: json): {exc}") from None
            return {"body": text}
        return value if isinstance(value, dict) else {"body": value}

    def _payload(self, document: dict[str, Any]) -> dict[str, Any]:
        if self.spec.payload == "$":
            return document
        found = values_at(self.spec.payload, document)
        if not found:
            raise Invalid(f"payload: {self.spec.payload} selects nothing in the message")
        return found[0] if isinstance(found[0], dict) else {"body": found[0]}

    def _text(
        self, expression: Expression, what: str, document: dict[str, Any], message: Message
    ) -> str:
        if expression.kind == "literal":
            return expression.text
        pieces = []
        for placeholder, text in expression.parts:
            if not placeholder:
                pieces.append(text)
                continue
            value = _value(text, document, message)
            if value is None:
                raise Invalid(f"{what}: {text} selects nothing in the message")
            pieces.append(value)
        return "".join(pieces)

    @staticmethod
    def _when(text: str) -> datetime:
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:  # epoch seconds, or milliseconds when it can only be those
            return datetime.fromtimestamp(seconds / 1000 if seconds > 1e11 else seconds, UTC)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(
                f"time: {text!r} is neither ISO 8601 (2026-11-23T12:00:00Z) nor epoch seconds"
            ) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)


def _carried(message: Message, document: dict[str, Any]) -> tracing.TraceContext | None:
    """The trace context ``message`` carries, if any (see the module docs)."""
    if message.headers:
        for prefix in ("", "ce_", "ce-"):
            if (found := tracing.carried(message.headers, prefix)) is not None:
                return found
    return tracing.carried(document) if "specversion" in document else None


def _value(name: str, document: dict[str, Any], message: Message) -> str | None:
    """The text of one placeholder, or None when the message has nothing there."""
    if name.startswith("$"):
        found = values_at(name, document)
        if not found or found[0] is None:
            return None
        value = found[0]
        if isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if name.startswith("headers."):
        return message.headers.get(name[8:])
    if name == "subject":
        return message.subject
    if name == "id":
        return message.native_id
    if name == "key":
        return message.key
    if name == "time":
        return message.time.isoformat() if message.time else None
    raise AssertionError(f"unknown placeholder {name}")  # parse_expression refuses these

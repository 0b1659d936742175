"""Events on the wire: CloudEvents 1.0 in the Kafka binding's binary or structured mode.

Encoding goes through the ``cloudevents`` SDK's Kafka binding, so what we write
is exactly what any CloudEvents consumer expects: ``ce_*`` headers, the JSON
payload as the value, and the event name as both the ``type`` and the key.
Decoding also reads structured mode (``content-type: application/cloudevents+json``,
the whole event as the value), which the binding asks receivers to support, so
that any Kafka client's CloudEvents reach the sensors (docs/wire.md).

Decoding sits on the engine's hot path. The SDK's ``from_binary`` costs about
24 µs per record here (it builds and validates a full event object), which is
three times the whole per-event budget (docs/architecture.md, "Measured facts"), so :func:`decode`
reads the few headers we need directly, and parses the payload with msgspec
(0.5 µs for a small event, against 2.5 µs for ``json.loads``; big integers stay
exact). Tests check it against the SDK.

:class:`Envelope` is a msgspec ``Struct`` so that the engine's internal records
(offers, changelog) encode and decode it in C, without copying it field by field.
Its fields are an array there: new ones go at the end, with defaults, so that the
records written before them still decode.

An event joins a trace with the CloudEvents distributed-tracing extension: the
``traceparent`` and ``tracestate`` attributes (``ce_traceparent``, ``ce_tracestate``
in binary mode), which :mod:`triggers.tracing` fills in and decoding passes along.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pydantic_core
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from triggers.errors import EventDecodeError, PublishError

__all__ = [
    "Envelope",
    "KafkaRecord",
    "decode",
    "encode",
    "make_envelope",
    "trace_attributes",
    "validate_event_name",
]

# `@` and `+`: Metaflow's end events name the branch, which names the user (an e-mail).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-:/@+]{0,254}")
_JSON_TYPES = (b"application/json", b"text/json")
_STRUCTURED = b"application/cloudevents"  # the binding's prefix for structured mode
_JSON_FORMAT = b"application/cloudevents+json"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What a producer sends: key, value and headers."""

    key: bytes
    value: bytes
    headers: Headers


class Envelope(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One named event: the CloudEvent attributes tripwire uses, plus its JSON payload.

    ``time`` is the event time (CloudEvent ``time``); it is None when the
    producer did not set one, and the engine then uses arrival time.
    ``traceparent`` and ``tracestate`` are the W3C trace context the event joins
    (None: none), as the producer wrote them.
    """

    name: str
    id: str
    source: str
    time: datetime | None
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    traceparent: str | None = None
    tracestate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view, as runs and the CLI show it."""
        return {
            "name": self.name,
            "id": self.id,
            "source": self.source,
            "time": self.time.isoformat() if self.time else None,
            "payload": self.payload,
        }


def validate_event_name(name: object, *, error: type[Exception] = PublishError) -> str:
    """Return ``name`` if it is a valid event name, else raise ``error`` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise error(
            f"invalid event name {name!r}: use 1-255 characters from letters, digits and "
            "`_ . - : / @ +`, starting with a letter or digit (e.g. 'data_updated')."
        )
    return name


def make_envelope(
    name: str,
    payload: Any = None,
    *,
    id: str | None = None,
    source: str = "tripwire://publish",
    time: datetime | str | None = None,
    max_payload_bytes: int = 1024 * 1024,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> tuple[Envelope, bytes]:
    """Validate a publish request and return the envelope and its JSON payload bytes.

    Raises:
        PublishError: the name is invalid, the payload is not a JSON object, cannot be
            serialised, or is larger than ``max_payload_bytes``.
    """
    validate_event_name(name)
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise PublishError(
            f"payload of event {name!r} must be a JSON object (a dict), not "
            f"{type(payload).__name__}; wrap it, e.g. payload={{'value': ...}}."
        )
    try:
        body = pydantic_core.to_json(payload)
    except pydantic_core.PydanticSerializationError as exc:
        raise PublishError(f"payload of event {name!r} is not JSON-serialisable: {exc}") from exc
    if len(body) > max_payload_bytes:
        raise PublishError(
            f"payload of event {name!r} is {len(body)} bytes, over the limit of "
            f"{max_payload_bytes} bytes (TRIPWIRE_MAX_PAYLOAD_BYTES); publish a reference "
            "to the data (a URL or a key) instead of the data itself."
        )
    event_time = _parse_time(time, name) if time is not None else datetime.now(UTC)
    envelope = Envelope(
        name=name,
        id=id or str(uuid.uuid4()),
        source=source,
        time=event_time,
        # Round-trip so the envelope holds exactly what consumers will see.
        payload=json.loads(body),
        traceparent=traceparent,
        tracestate=tracestate,
    )
    return envelope, body


def _parse_time(value: datetime | str, name: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise PublishError(
                f"time {value!r} of event {name!r} is not ISO 8601; "
                "use e.g. '2026-05-01T12:00:00Z'."
            ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def trace_attributes(traceparent: str, tracestate: str | None) -> dict[str, str]:
    """The CloudEvent extension attributes of a W3C trace context (distributed tracing)."""
    attributes = {"traceparent": traceparent}
    if tracestate:
        attributes["tracestate"] = tracestate
    return attributes


def encode(envelope: Envelope) -> KafkaRecord:
    """Encode an envelope as a Kafka record through the CloudEvents Kafka binding."""
    attributes: dict[str, Any] = {
        "type": envelope.name,
        "source": envelope.source,
        "id": envelope.id,
        "datacontenttype": "application/json",
    }
    if envelope.time is not None:
        attributes["time"] = envelope.time
    if envelope.traceparent is not None:
        attributes |= trace_attributes(envelope.traceparent, envelope.tracestate)
    message = ce_kafka.to_binary_event(
        CloudEvent(attributes=attributes, data=envelope.payload),
        key_mapper=lambda event: event.get_type(),
    )
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return KafkaRecord(key=key, value=message.value, headers=list(message.headers.items()))


def decode(value: bytes | None, headers: Headers | tuple[tuple[str, bytes], ...]) -> Envelope:
    """Decode a CloudEvent record: binary mode, or structured mode in the JSON event format.

    Raises:
        EventDecodeError: with the reason, when the record is not a CloudEvent with a
            JSON-object payload (for dead-lettering; the worker keeps going).
    """
    attrs = dict(headers)  # in C; the binding spells headers `ce_type`, `content-type`
    if "ce_type" not in attrs or "ce_id" not in attrs:
        attrs = {key.lower(): raw for key, raw in headers}  # another spelling, or missing
    content_type = attrs.get("content-type", b"application/json")
    if content_type != b"application/json":
        if content_type is None:
            _refuse_nulls(attrs)
        # The binding tells the modes apart by this prefix, matched case-insensitively.
        elif content_type[:23].lower() == _STRUCTURED:
            return _decode_structured(value, content_type)
    try:
        name = attrs["ce_type"].decode()
        event_id = attrs["ce_id"].decode()
        source = attrs.get("ce_source", b"").decode()
        raw_time = attrs.get("ce_time", b"")
        event_time = _event_time(raw_time.decode(errors="replace"), event_id) if raw_time else None
    except KeyError as exc:
        raise EventDecodeError(
            f"record is not a binary-mode CloudEvent: header {exc.args[0]} is missing"
        ) from None
    except UnicodeDecodeError as exc:
        raise EventDecodeError(f"record has a CloudEvent header that is not UTF-8: {exc}") from None
    except AttributeError:  # a header without a value: Kafka allows it, the binding does not
        _refuse_nulls(attrs)
        raise
    if raw_time is None:  # a ce_time header without a value
        _refuse_nulls(attrs)
    if attrs.get("ce_specversion", b"1.0") != b"1.0":
        _refuse_nulls(attrs)  # one without a value is refused as such
        raise EventDecodeError(
            f"event {event_id!r} has unsupported specversion; tripwire reads 1.0"
        )
    if not event_id:
        raise EventDecodeError("record has an empty ce_id header: a CloudEvent needs an id")
    validate_event_name(name, error=EventDecodeError)
    if content_type != b"application/json" and not _is_json(content_type):
        raise EventDecodeError(
            f"event {event_id!r} has content type {content_type!r}; tripwire reads JSON only"
        )
    try:
        payload = _decode_json(value) if value else {}
    except msgspec.DecodeError as exc:
        raise EventDecodeError(
            f"event {event_id!r} has a payload that is not JSON: {exc}"
        ) from None
    if not isinstance(payload, dict):
        raise EventDecodeError(
            f"event {event_id!r} has a {type(payload).__name__} payload; it must be a JSON object"
        )
    traceparent = attrs.get("ce_traceparent")
    if not traceparent:  # the common case: one lookup
        return Envelope(name, event_id, source, event_time, payload)
    raw_state = attrs.get("ce_tracestate")
    state = raw_state.decode(errors="replace") if raw_state else None
    trace = traceparent.decode(errors="replace")
    return Envelope(name, event_id, source, event_time, payload, trace, state)


def _decode_structured(value: bytes | None, content_type: bytes) -> Envelope:
    """Decode a structured-mode record: the whole CloudEvent, as JSON, in the value."""
    media = content_type.split(b";", 1)[0].strip().lower()
    if media != _JSON_FORMAT:
        raise EventDecodeError(
            f"record is a structured-mode CloudEvent in {media.decode(errors='replace')}; "
            "tripwire reads application/cloudevents+json or binary mode"
        )
    try:
        event = _decode_json(value or b"")
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"structured-mode record is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise EventDecodeError(
            f"structured-mode record is a JSON {type(event).__name__}; a CloudEvent is an object"
        )
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise EventDecodeError("structured-mode CloudEvent has no id: a CloudEvent needs one")
    if "type" not in event:
        raise EventDecodeError(f"structured-mode event {event_id!r} has no type")
    name = validate_event_name(event["type"], error=EventDecodeError)
    source = event.get("source", "")
    if not isinstance(source, str):
        raise EventDecodeError(f"structured-mode event {event_id!r} has a source that is not text")
    if event.get("specversion", "1.0") != "1.0":
        raise EventDecodeError(
            f"event {event_id!r} has unsupported specversion; tripwire reads 1.0"
        )
    data_type = event.get("datacontenttype", "application/json")
    if not isinstance(data_type, str) or not _is_json(data_type.encode(errors="replace")):
        raise EventDecodeError(
            f"event {event_id!r} has datacontenttype {data_type!r}; tripwire reads JSON only"
        )
    if "data_base64" in event:
        raise EventDecodeError(
            f"event {event_id!r} carries data_base64; tripwire reads JSON data only"
        )
    payload = event.get("data", {})
    if not isinstance(payload, dict):
        raise EventDecodeError(
            f"event {event_id!r} has a {type(payload).__name__} payload; it must be a JSON object"
        )
    raw_time = event.get("time")
    if raw_time is not None and not isinstance(raw_time, str):
        raise EventDecodeError(f"event {event_id!r} has a time that is not RFC 3339: {raw_time!r}")
    event_time = _event_time(raw_time, event_id) if raw_time else None
    traceparent = event.get("traceparent")
    if not traceparent or not isinstance(traceparent, str):  # absent, or not one: dropped
        return Envelope(name, event_id, source, event_time, payload)
    raw_state = event.get("tracestate")
    state = raw_state if isinstance(raw_state, str) and raw_state else None
    return Envelope(name, event_id, source, event_time, payload, traceparent, state)


def _refuse_nulls(attrs: dict[str, bytes]) -> None:
    """Raise :class:`EventDecodeError` naming the CloudEvent headers that have no value."""
    nulls = sorted(
        key
        for key, raw in attrs.items()
        if raw is None and (key[:3] == "ce_" or key == "content-type")
    )
    if nulls:
        raise EventDecodeError(f"record has CloudEvent headers without a value (null): {nulls}")


def _is_json(content_type: bytes) -> bool:
    """True for a JSON media type: application/json, text/json or any ``+json``, as the
    CloudEvents JSON format counts them; parameters (``; charset=utf-8``) aside."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in _JSON_TYPES or media.endswith(b"+json")


def _event_time(raw: str, event_id: str) -> datetime:
    try:
        event_time = datetime.fromisoformat(raw)
    except ValueError:
        try:  # RFC 3339 allows a lower-case `t` and `z`, which fromisoformat does not read
            event_time = datetime.fromisoformat(raw.upper())
        except ValueError:
            raise EventDecodeError(
                f"event {event_id!r} has a time that is not RFC 3339: {raw!r}"
            ) from None
    return event_time if event_time.tzinfo is not None else event_time.replace(tzinfo=UTC)


_decode_json = msgspec.json.Decoder().decode

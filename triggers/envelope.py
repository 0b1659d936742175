"""Events on the wire: CloudEvents 1.0 in Kafka binary content mode.

Encoding goes through the ``cloudevents`` SDK's Kafka binding, so what we write
is exactly what any CloudEvents consumer expects: ``ce_*`` headers, the JSON
payload as the value, and the event name as both the ``type`` and the key.

Decoding sits on the engine's hot path. The SDK's ``from_binary`` costs about
24 µs per record here (it builds and validates a full event object), which is
three times the whole per-event budget (docs/architecture.md, "Measured facts"), so :func:`decode`
reads the few headers we need directly, and parses the payload with msgspec
(0.5 µs for a small event, against 2.5 µs for ``json.loads``; big integers stay
exact). Tests check it against the SDK.

:class:`Envelope` is a msgspec ``Struct`` so that the engine's internal records
(offers, changelog) encode and decode it in C, without copying it field by field.
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

__all__ = ["Envelope", "KafkaRecord", "decode", "encode", "make_envelope", "validate_event_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-:/]{0,254}$")
_JSON_TYPES = ("application/json", "text/json")

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
    """

    name: str
    id: str
    source: str
    time: datetime | None
    payload: dict[str, Any] = msgspec.field(default_factory=dict)

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
    if not isinstance(name, str) or not _NAME.match(name):
        raise error(
            f"invalid event name {name!r}: use 1-255 characters from letters, digits and "
            "`_ . - : /`, starting with a letter or digit (e.g. 'data_updated')."
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
    message = ce_kafka.to_binary_event(
        CloudEvent(attributes=attributes, data=envelope.payload),
        key_mapper=lambda event: event.get_type(),
    )
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return KafkaRecord(key=key, value=message.value, headers=list(message.headers.items()))


def decode(value: bytes | None, headers: Headers | tuple[tuple[str, bytes], ...]) -> Envelope:
    """Decode a binary-mode CloudEvent record.

    Raises:
        EventDecodeError: with the reason, when the record is not a CloudEvent with a
            JSON-object payload (for dead-lettering; the worker keeps going).
    """
    attrs = dict(headers)  # in C; the binding spells headers `ce_type`, `content-type`
    if "ce_type" not in attrs or "ce_id" not in attrs:
        attrs = {key.lower(): raw for key, raw in headers}  # another spelling, or missing
    try:
        name = attrs["ce_type"].decode()
        event_id = attrs["ce_id"].decode()
        source = attrs.get("ce_source", b"").decode()
    except KeyError as exc:
        raise EventDecodeError(
            f"record is not a binary-mode CloudEvent: header {exc.args[0]} is missing"
        ) from None
    except UnicodeDecodeError as exc:
        raise EventDecodeError(f"record has a CloudEvent header that is not UTF-8: {exc}") from None
    if not event_id:
        raise EventDecodeError("record has an empty ce_id header: a CloudEvent needs an id")
    validate_event_name(name, error=EventDecodeError)
    content_type = attrs.get("content-type", b"application/json")
    if attrs.get("ce_specversion", b"1.0") != b"1.0":
        raise EventDecodeError(
            f"event {event_id!r} has unsupported specversion; tripwire reads 1.0"
        )
    if (
        content_type != b"application/json"
        and content_type.split(b";", 1)[0].strip().decode(errors="replace") not in _JSON_TYPES
    ):
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
    raw_time = attrs.get("ce_time")
    event_time: datetime | None = None
    if raw_time:
        try:
            event_time = datetime.fromisoformat(raw_time.decode())
        except ValueError:
            raise EventDecodeError(
                f"event {event_id!r} has a time that is not RFC 3339: {raw_time!r}"
            ) from None
        if event_time.tzinfo is None:
            event_time = event_time.replace(tzinfo=UTC)
    return Envelope(name=name, id=event_id, source=source, time=event_time, payload=payload)


_decode_json = msgspec.json.Decoder().decode

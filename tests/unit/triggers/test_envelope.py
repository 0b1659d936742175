"""The wire codec: what publish() writes is a CloudEvent any consumer reads, and back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given

from tests.strategies import event_names, payloads
from triggers.envelope import Envelope, decode, encode, make_envelope
from triggers.errors import EventDecodeError, PublishError

names = event_names


def test_an_envelope_gets_a_fresh_uuid_and_the_current_utc_time() -> None:
    before = datetime.now(UTC)
    envelope, body = make_envelope("data_updated", {"rows": 1})
    assert uuid.UUID(envelope.id).version == 4
    assert envelope.time is not None and before <= envelope.time <= datetime.now(UTC)
    assert json.loads(body) == {"rows": 1}


def test_no_payload_is_an_empty_object() -> None:
    envelope, _ = make_envelope("data_updated")
    assert envelope.payload == {}


@pytest.mark.parametrize("payload", [[1, 2], "text", 42, 1.5, True])
def test_a_payload_that_is_not_an_object_is_refused_with_the_fix(payload: object) -> None:
    with pytest.raises(PublishError, match=r"must be a JSON object.*wrap it"):
        make_envelope("data_updated", payload)


def test_a_payload_that_is_not_json_is_refused() -> None:
    with pytest.raises(PublishError, match="not JSON-serialisable"):
        make_envelope("data_updated", {"when": object()})


def test_a_payload_over_the_limit_is_refused_naming_the_limit_and_the_setting() -> None:
    with pytest.raises(
        PublishError, match=r"over the limit of 100 bytes.*TRIPWIRE_MAX_PAYLOAD_BYTES"
    ):
        make_envelope("data_updated", {"blob": "x" * 200}, max_payload_bytes=100)


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 300, "trailing\n", None, 5])
def test_an_invalid_event_name_is_refused_saying_what_is_allowed(name: object) -> None:
    with pytest.raises(PublishError, match=r"invalid event name.*letters, digits"):
        make_envelope(name, {})  # type: ignore[arg-type]


def test_a_time_that_is_not_iso_8601_is_refused() -> None:
    with pytest.raises(PublishError, match="not ISO 8601"):
        make_envelope("data_updated", {}, time="yesterday")


def test_a_naive_time_is_taken_as_utc_and_offsets_are_kept() -> None:
    naive, _ = make_envelope("e", {}, time="2026-01-01T10:00:00")
    assert naive.time == datetime(2026, 1, 1, 10, tzinfo=UTC)
    offset, _ = make_envelope("e", {}, time="2026-01-01T10:00:00+02:00")
    assert offset.time == datetime(2026, 1, 1, 10, tzinfo=timezone(timedelta(hours=2)))


def test_encoding_writes_binary_mode_headers_and_keys_by_event_name() -> None:
    envelope, _ = make_envelope("data_updated", {"rows": 1}, id="abc", source="etl://nightly")
    record = encode(envelope)
    headers = dict(record.headers)
    assert record.key == b"data_updated"
    assert headers["ce_type"] == b"data_updated"
    assert headers["ce_id"] == b"abc"
    assert headers["ce_source"] == b"etl://nightly"
    assert headers["ce_specversion"] == b"1.0"
    assert json.loads(record.value) == {"rows": 1}


@given(names, payloads)
def test_the_fast_decoder_agrees_with_the_cloudevents_sdk(name: str, payload: dict) -> None:  # type: ignore[type-arg]
    envelope, _ = make_envelope(name, payload, source="test://source")
    record = encode(envelope)
    ours = decode(record.value, record.headers)
    theirs = ce_kafka.from_binary_event(
        ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    )
    assert ours.name == theirs.get_type() == name
    assert ours.id == theirs.get_id()
    assert ours.source == theirs.get_source()
    assert ours.time == theirs.get_time()
    assert ours.payload == payload == theirs.get_data()
    assert ours == envelope


def _headers(**overrides: bytes | None) -> list[tuple[str, bytes]]:
    base = {
        "ce_type": b"e",
        "ce_id": b"1",
        "ce_source": b"s",
        "ce_specversion": b"1.0",
        "content-type": b"application/json",
    }
    base.update(overrides)  # type: ignore[arg-type]
    return [(k, v) for k, v in base.items() if v is not None]


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"{}", _headers(ce_type=None), "ce_type is missing"),
        (b"{}", _headers(ce_id=None), "ce_id is missing"),
        (b"{nope", _headers(), "not JSON"),
        (b"[1]", _headers(), "list payload; it must be a JSON object"),
        (b"{}", _headers(**{"content-type": b"text/plain"}), "JSON only"),
        (b"{}", _headers(ce_time=b"tomorrow"), "not RFC 3339"),
        (b"{}", _headers(ce_specversion=b"0.3"), "specversion"),
        (b"{}", _headers(ce_type=b"\xff"), "not UTF-8"),
    ],
)
def test_a_bad_record_is_refused_with_the_reason(
    value: bytes, headers: list[tuple[str, bytes]], reason: str
) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        decode(value, headers)


def test_an_empty_value_decodes_to_an_empty_payload_and_no_time_is_none() -> None:
    envelope = decode(None, _headers())
    assert envelope.payload == {} and envelope.time is None


@pytest.mark.parametrize(
    "header", ["ce_type", "ce_id", "ce_source", "ce_time", "ce_specversion", "content-type"]
)
def test_a_cloudevent_header_without_a_value_is_refused_naming_it(header: str) -> None:
    # Kafka allows a header with a null value (librdkafka, the Java client); the binding
    # wants UTF-8 strings. Such a record is a dead letter, never a crash of the stage.
    headers = [(k, v) for k, v in _headers(ce_time=b"2026-01-01T00:00:00Z") if k != header]
    with pytest.raises(EventDecodeError, match=rf"without a value \(null\): \['{header}'\]"):
        decode(b"{}", [*headers, (header, None)])  # type: ignore[list-item]


def test_a_header_without_a_value_that_is_not_a_cloudevent_attribute_is_ignored() -> None:
    envelope = decode(b"{}", [*_headers(), ("traceparent", None)])  # type: ignore[list-item]
    assert envelope.name == "e"


@pytest.mark.parametrize(
    "content_type",
    [
        b"Application/JSON",
        b"application/json; charset=utf-8",
        b"text/json",
        b"application/vnd.x+json",
    ],
)
def test_any_json_media_type_is_read_as_json(content_type: bytes) -> None:
    envelope = decode(b'{"rows": 1}', _headers(**{"content-type": content_type}))
    assert envelope.payload == {"rows": 1}


def test_a_time_with_a_lower_case_t_and_z_is_rfc_3339() -> None:
    envelope = decode(b"{}", _headers(ce_time=b"2026-05-01t12:00:00z"))
    assert envelope.time == datetime(2026, 5, 1, 12, tzinfo=UTC)


def _structured(**attributes: object) -> bytes:
    event = {"specversion": "1.0", "type": "e", "source": "s", "id": "1", "data": {"rows": 1}}
    event.update(attributes)
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


STRUCTURED = [("content-type", b"application/cloudevents+json")]


@given(names, payloads)
def test_a_structured_mode_event_decodes_as_the_cloudevents_sdk_wrote_it(
    name: str,
    payload: dict,  # type: ignore[type-arg]
) -> None:
    envelope, _ = make_envelope(name, payload, source="test://source")
    attributes = {"type": name, "source": envelope.source, "id": envelope.id, "time": envelope.time}
    message = ce_kafka.to_structured_event(CloudEvent(attributes=attributes, data=payload))
    assert decode(message.value, list(message.headers.items())) == envelope


def test_structured_mode_is_told_by_the_content_type_whatever_the_other_headers_say() -> None:
    # The binding: a content type starting `application/cloudevents` (any case) is structured
    # mode, and ce_* headers may be there too; the value is the event.
    value = _structured(time="2026-05-01T12:00:00Z")
    content_type = b"Application/CloudEvents+JSON; charset=UTF-8"
    for headers in (
        _headers(ce_type=b"other", **{"content-type": content_type}),
        [("Content-Type", content_type)],
    ):
        envelope = decode(value, headers)
        assert (envelope.name, envelope.id, envelope.source) == ("e", "1", "s")
        assert envelope.payload == {"rows": 1}
        assert envelope.time == datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_a_structured_mode_event_without_data_or_time_has_an_empty_payload_and_no_time() -> None:
    envelope = decode(_structured(data=None), STRUCTURED)
    assert envelope.payload == {} and envelope.time is None


@pytest.mark.parametrize(
    ("value", "content_type", "reason"),
    [
        (_structured(), b"application/cloudevents+avro", "tripwire reads application/cloudevents"),
        (b"{nope", STRUCTURED[0][1], "structured-mode record is not JSON"),
        (b"[1]", STRUCTURED[0][1], "is a JSON list; a CloudEvent is an object"),
        (None, STRUCTURED[0][1], "structured-mode record is not JSON"),
        (_structured(id=None), STRUCTURED[0][1], "has no id"),
        (_structured(id=""), STRUCTURED[0][1], "has no id"),
        (_structured(type=None), STRUCTURED[0][1], "has no type"),
        (_structured(type="has space"), STRUCTURED[0][1], "invalid event name"),
        (_structured(source=5), STRUCTURED[0][1], "source that is not text"),
        (_structured(specversion="0.3"), STRUCTURED[0][1], "specversion"),
        (_structured(datacontenttype="text/csv"), STRUCTURED[0][1], "JSON only"),
        (_structured(data=None, data_base64="e30="), STRUCTURED[0][1], "data_base64"),
        (_structured(data=[1]), STRUCTURED[0][1], "list payload; it must be a JSON object"),
        (_structured(time="tomorrow"), STRUCTURED[0][1], "not RFC 3339"),
        (_structured(time=5), STRUCTURED[0][1], "not RFC 3339"),
    ],
)
def test_a_bad_structured_mode_record_is_refused_with_the_reason(
    value: bytes | None, content_type: bytes, reason: str
) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        decode(value, [("content-type", content_type)])


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_trace_context_goes_out_as_ce_traceparent_and_ce_tracestate_headers_and_back() -> None:
    envelope, _ = make_envelope("e", {"rows": 1}, traceparent=TRACEPARENT, tracestate="congo=t61")
    record = encode(envelope)
    headers = dict(record.headers)
    assert headers["ce_traceparent"] == TRACEPARENT.encode()
    assert headers["ce_tracestate"] == b"congo=t61"
    assert decode(record.value, record.headers) == envelope


def test_an_event_without_a_trace_context_has_no_trace_headers() -> None:
    envelope, _ = make_envelope("e", {"rows": 1})
    record = encode(envelope)
    assert not {"ce_traceparent", "ce_tracestate"} & dict(record.headers).keys()
    decoded = decode(record.value, record.headers)
    assert decoded.traceparent is None and decoded.tracestate is None


def test_binary_mode_trace_headers_of_another_producer_are_read() -> None:
    envelope = decode(b"{}", _headers(ce_traceparent=TRACEPARENT.encode()))
    assert (envelope.traceparent, envelope.tracestate) == (TRACEPARENT, None)


def test_a_structured_mode_event_keeps_its_traceparent_and_tracestate() -> None:
    envelope = decode(_structured(traceparent=TRACEPARENT, tracestate="congo=t61"), STRUCTURED)
    assert (envelope.traceparent, envelope.tracestate) == (TRACEPARENT, "congo=t61")


def test_a_structured_mode_traceparent_that_is_not_text_is_dropped_not_refused() -> None:
    envelope = decode(_structured(traceparent=5, tracestate="congo=t61"), STRUCTURED)
    assert (envelope.traceparent, envelope.tracestate) == (None, None)
    assert envelope.payload == {"rows": 1}


def test_an_internal_record_written_before_the_trace_fields_still_decodes() -> None:
    # Given an envelope as the engine's offers and changelog held it, five fields in an array
    old = b'["e","1","s","2026-05-01T12:00:00Z",{"rows":1}]'
    # When this version reads it
    envelope = msgspec.json.decode(old, type=Envelope)
    # Then the new trailing fields take their defaults
    assert envelope == Envelope("e", "1", "s", datetime(2026, 5, 1, 12, tzinfo=UTC), {"rows": 1})
    assert envelope.traceparent is None and envelope.tracestate is None
    traced = Envelope("e", "1", "s", None, {}, TRACEPARENT, "congo=t61")
    assert msgspec.json.decode(msgspec.json.encode(traced), type=Envelope) == traced

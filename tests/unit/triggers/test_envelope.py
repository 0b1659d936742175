"""The wire codec: what publish() writes is a CloudEvent any consumer reads, and back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from hypothesis import given

from tests.strategies import event_names, payloads
from triggers.envelope import decode, encode, make_envelope
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


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 300, None, 5])
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

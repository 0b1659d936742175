"""Making events of bus messages, as a source's declaration says."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sensors.sources.base import Message
from sensors.sources.convert import Converter, Filtered, Invalid
from triggers.sources import EventSource

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def converter(**fields: Any) -> Converter:
    spec = {"name": "orders", "url": "redis://h", "stream": "s", "event": "order_placed"}
    return Converter(EventSource.model_validate({**spec, **fields}), max_payload_bytes=1024)


def message(body: bytes | dict[str, Any], **fields: Any) -> Message:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(body=raw, subject=fields.pop("subject", "orders.eu"), **fields)


def test_a_json_object_is_the_payload_and_the_message_id_makes_the_event_id() -> None:
    event = converter().convert(message({"order": "o-1"}, native_id="s:1-0"), NOW)
    assert (event.name, event.id, event.payload) == (
        "order_placed",
        "orders:s:1-0",
        {"order": "o-1"},
    )
    assert (event.source, event.time) == ("tripwire://sources/orders", NOW)


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        (b"plain text", {"body": "plain text"}),
        (b"42", {"body": 42}),
        (b"[1, 2]", {"body": [1, 2]}),
        (b"\xff\xfe", {"body_base64": base64.b64encode(b"\xff\xfe").decode()}),
    ],
)
def test_anything_else_is_wrapped_as_body(body: bytes, payload: dict[str, Any]) -> None:
    assert converter().convert(message(body), NOW).payload == payload


def test_format_text_keeps_json_as_text_and_format_json_refuses_text() -> None:
    assert converter(format="text").convert(message(b'{"a": 1}'), NOW).payload == {
        "body": '{"a": 1}'
    }
    with pytest.raises(Invalid, match="not JSON"):
        converter(format="json").convert(message(b"plain"), NOW)


def test_the_event_name_can_come_from_the_message() -> None:
    by_path = converter(event="$.type").convert(message({"type": "order_paid"}), NOW)
    assert by_path.name == "order_paid"
    template = converter(event="orders.{$.region}.{subject}")
    assert template.convert(message({"region": "eu"}, subject="new"), NOW).name == "orders.eu.new"
    with pytest.raises(Invalid, match=r"event: \$.type selects nothing"):
        converter(event="$.type").convert(message({"kind": "x"}), NOW)
    with pytest.raises(Invalid, match="invalid event name"):
        converter(event="$.type").convert(message({"type": "has spaces"}), NOW)


def test_id_and_time_can_come_from_the_message() -> None:
    c = converter(id="order-{$.order}", time="$.at")
    event = c.convert(message({"order": 7, "at": "2026-01-02T03:04:05Z"}), NOW)
    assert event.id == "order-7"
    assert event.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    epoch = converter(time="$.at").convert(message({"at": 1_800_000_000_000}), NOW)
    assert epoch.time == datetime.fromtimestamp(1_800_000_000, UTC)
    with pytest.raises(Invalid, match="neither ISO 8601"):
        converter(time="$.at").convert(message({"at": "yesterday"}), NOW)


def test_headers_and_keys_fill_templates() -> None:
    c = converter(id="{key}/{headers.trace}")
    event = c.convert(message({}, key="k1", headers={"trace": "t9"}), NOW)
    assert event.id == "k1/t9"
    with pytest.raises(Invalid, match=r"headers\.trace selects nothing"):
        c.convert(message({}, key="k1"), NOW)


def test_a_message_without_an_id_gets_a_fresh_one() -> None:
    c = converter()
    assert c.convert(message({}), NOW).id != c.convert(message({}), NOW).id


def test_payload_selects_part_of_the_body_and_expressions_read_all_of_it() -> None:
    c = converter(payload="$.data", event="$.type")
    event = c.convert(message({"type": "order_paid", "data": {"order": "o-1"}}), NOW)
    assert (event.name, event.payload) == ("order_paid", {"order": "o-1"})
    with pytest.raises(Invalid, match=r"payload: \$.data selects nothing"):
        c.convert(message({"type": "order_paid"}), NOW)


def test_filters_drop_messages_with_the_reason() -> None:
    c = converter(filters=["$.amount >= 100", '$.region in ["eu", "us"]'])
    assert c.convert(message({"amount": 150, "region": "eu"}), NOW).payload["amount"] == 150
    with pytest.raises(Filtered, match="amount = 5 is not >= 100"):
        c.convert(message({"amount": 5, "region": "eu"}), NOW)
    either = converter(filters=["$.amount >= 100", "$.vip == true"], filters_operator="or")
    assert either.convert(message({"amount": 1, "vip": True}), NOW)


def test_a_payload_over_the_limit_is_invalid_with_the_fix() -> None:
    with pytest.raises(Invalid, match="over the limit of 1024 bytes"):
        converter().convert(message({"blob": "x" * 2000}), NOW)


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("prefix", ["", "ce_", "ce-"])
def test_the_event_keeps_the_trace_context_the_message_headers_carry(prefix: str) -> None:
    # W3C headers as a traced producer writes them, or a CloudEvent's in binary mode
    headers = {f"{prefix}traceparent": TRACEPARENT, f"{prefix}tracestate": "congo=t61"}
    event = converter().convert(message({"order": "o-1"}, headers=headers), NOW)
    assert (event.traceparent, event.tracestate) == (TRACEPARENT, "congo=t61")


def test_a_structured_cloudevent_in_the_body_keeps_its_traceparent() -> None:
    body = {"specversion": "1.0", "type": "t", "id": "1", "traceparent": TRACEPARENT}
    event = converter().convert(message(body), NOW)
    assert (event.traceparent, event.tracestate) == (TRACEPARENT, None)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"order": "o-1"}, {}),
        ({"order": "o-1"}, {"traceparent": "not a trace context"}),
        ({"traceparent": TRACEPARENT}, {}),  # a field of the user's, not a CloudEvent's
    ],
)
def test_a_message_without_a_well_formed_trace_context_gives_an_event_without_one(
    body: dict[str, Any], headers: dict[str, str]
) -> None:
    event = converter().convert(message(body, headers=headers), NOW)
    assert event.traceparent is None and event.tracestate is None

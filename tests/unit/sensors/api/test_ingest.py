"""HTTP bodies into events: JSON, and CloudEvents structured, binary and batched."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sensors.api.ingest import BATCH, STRUCTURED, BadRequest, parse_events


def parse(body: bytes, content_type: str = "application/json", **headers: str) -> Any:
    return parse_events(
        "orders",
        body,
        {"content-type": content_type, **headers},
        {"id": "q1", "source": "etl://x"},
        default_source="tripwire://publish",
        max_payload_bytes=200,
    )


CE = {"specversion": "1.0", "id": "c1", "source": "/crm", "type": "orders", "data": {"n": 1}}


def test_a_json_object_is_the_payload_and_the_query_gives_id_and_source() -> None:
    [event] = parse(b'{"n": 1}')
    assert (event.name, event.id, event.source, event.payload) == (
        "orders",
        "q1",
        "etl://x",
        {"n": 1},
    )
    [empty] = parse(b"")
    assert empty.payload == {}


def test_cloudevents_in_each_mode_keep_their_attributes() -> None:
    [one] = parse(json.dumps(CE).encode(), STRUCTURED)
    assert (one.id, one.source, one.payload) == ("c1", "/crm", {"n": 1})
    batch = parse(json.dumps([CE, {**CE, "id": "c2"}]).encode(), BATCH)
    assert [e.id for e in batch] == ["c1", "c2"]
    [binary] = parse(
        b'{"n": 3}',
        **{"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/s", "ce-type": "orders"},
    )
    assert (binary.id, binary.payload) == ("b1", {"n": 3})


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{", "application/json", 400, "not valid JSON"),
        (b"[1]", "application/json", 400, "must be a JSON object"),
        (b"{}", "text/plain", 415, "not accepted"),
        (json.dumps({**CE, "type": "other"}).encode(), STRUCTURED, 422, "post it to"),
        (json.dumps({"id": "x"}).encode(), STRUCTURED, 422, "not a valid CloudEvent"),
        (json.dumps({**CE, "data": [1]}).encode(), STRUCTURED, 400, "must be a JSON object"),
        (b"{}", BATCH, 400, "non-empty JSON array"),
        (json.dumps([CE] * 1001).encode(), BATCH, 413, "at most 1000"),
        (json.dumps({"x": "y" * 300}).encode(), "application/json", 413, "over the limit"),
    ],
)
def test_bad_bodies_say_what_is_wrong(
    body: bytes, content_type: str, status: int, says: str
) -> None:
    with pytest.raises(BadRequest, match=says) as caught:
        parse(body, content_type)
    assert caught.value.status == status


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_cloudevent_keeps_its_own_trace_context_in_each_mode() -> None:
    traced = {**CE, "traceparent": TRACEPARENT, "tracestate": "congo=t61"}
    [one] = parse(json.dumps(traced).encode(), STRUCTURED)
    assert (one.traceparent, one.tracestate) == (TRACEPARENT, "congo=t61")
    [first, second] = parse(json.dumps([traced, {**CE, "id": "c2"}]).encode(), BATCH)
    assert (first.traceparent, second.traceparent) == (TRACEPARENT, None)
    [binary] = parse(
        b'{"n": 3}',
        **{
            "ce-specversion": "1.0",
            "ce-id": "b1",
            "ce-source": "/s",
            "ce-type": "orders",
            "ce-traceparent": TRACEPARENT,
        },
    )
    assert (binary.traceparent, binary.tracestate) == (TRACEPARENT, None)


def test_a_json_payload_has_no_trace_context_of_its_own() -> None:
    # The request's `traceparent` header is the route's to apply (triggers.tracing.current)
    [event] = parse(b'{"n": 1}', traceparent=TRACEPARENT)
    assert event.traceparent is None

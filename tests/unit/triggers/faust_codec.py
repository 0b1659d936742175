"""Run by test_faust.py in the faust virtualenv: triggers.faust's schemas on records the test
made in tripwire's own virtualenv.

Reads ``{"events": [...], "run_events": [...]}`` on stdin, each record a list
``[key, value, headers]`` with bytes as latin-1 text. Decodes each as a faust worker does
(a ``Message`` through the topic's schema), sends each tripwire event back through a topic
of ``EventSchema`` as far as the producer, tries values that are no tripwire record, and
prints what came out as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import faust
from faust.types import Message

from triggers.errors import TripwireError
from triggers.faust import EventSchema, RunEvent, RunEventSchema


def _message(topic: str, record: list[Any]) -> Message:
    key, value, headers = record
    return Message(
        topic=topic,
        partition=0,
        offset=0,
        timestamp=0.0,
        timestamp_type=0,
        headers=[(name, raw.encode("latin-1")) for name, raw in headers],
        key=key.encode("latin-1") if key is not None else None,
        value=value.encode("latin-1") if value is not None else None,
        checksum=None,
    )


def _text(raw: bytes | None) -> str | None:
    return raw.decode("latin-1") if raw is not None else None


def _fields(value: Any) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in value.asdict().items()}


async def main() -> None:
    records = json.load(sys.stdin)
    app = faust.App("codec-check", broker="kafka://unused:9092")
    events = app.topic("events", schema=EventSchema())
    run_events = app.topic("run-events", schema=RunEventSchema())
    result: dict[str, list[Any]] = {"events": [], "run_events": [], "refused": []}
    for kind, topic in (("events", events), ("run_events", run_events)):
        for record in records[kind]:
            try:
                event = await topic.schema.decode(app, _message(kind, record), propagate=True)
            except faust.exceptions.DecodeError as exc:
                result[kind].append({"error": f"{type(exc).__name__}: {exc}"})
                continue
            seen: dict[str, Any] = {"key": event.key, "value": _fields(event.value)}
            if isinstance(event.value, RunEvent):
                seen["finished"] = event.value.finished
                # Sent on as JSON to a topic of one's own, it reads back equal.
                again = RunEvent.loads(event.value.dumps())
                seen["json_round_trip"] = again == event.value
            else:
                sent = topic.as_future_message(key=event.value.name, value=event.value).message
                headers = sent.headers.items() if isinstance(sent.headers, dict) else sent.headers
                seen["sent"] = [
                    _text(sent.key),
                    _text(sent.value),
                    [[n, _text(v)] for n, v in headers],
                ]
            result[kind].append(seen)
    # What would not be a tripwire record is refused before it reaches the producer.
    for topic, value in ((events, {"rows": 1}), (run_events, b"{}"), (run_events, {"a": 1})):
        try:
            topic.as_future_message(key="k", value=value)
        except TripwireError as exc:
            result["refused"].append(f"{type(exc).__name__}: {exc}")
        else:
            result["refused"].append(None)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())

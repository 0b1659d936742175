"""The sensor stages' spans: route, correlate and fire (docs/tracing.md).

Made only while this process records spans (``tracing.spans``), which the stages check
before they call anything here: off, tracing costs them that one check. Each event's
spans continue the trace its CloudEvent carries (a new trace when it carries none):

- ``route EVENT`` (a consumer span) for each event the sensor stage reads; the event
  then carries the route span's context onward, in its offers and held state;
- ``correlate SENSOR`` for each offer the correlation stage decides, with the sensor
  id, correlation key (as JSON), dependency, and the dependencies the key holds after
  the offer's batch (none once they went to a run) as attributes;
- ``fire SENSOR`` for each run a sensor decides: a child of the span of the event that
  completed it (its correlate span, or its route span for a one-event sensor), linked
  to the span of each contributing event. The run request carries its context, so the
  run's admission, launch and attempts are its children.

The spans of a batch share its start and end: the stages decide a batch at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from sensors.core.types import Arrival, Fire, Offer, StateChange
from triggers import tracing

__all__ = ["correlated", "fired", "now", "routed"]

_MESSAGING = {"messaging.system": "kafka", "messaging.operation.type": "process"}


def routed(arrivals: list[Arrival], topic: str, started: int) -> list[Arrival]:
    """A ``route`` span for each of ``arrivals``, started at ``started`` (ns) and ended
    now; return the arrivals, each carrying its route span's context."""
    out = []
    for arrival in arrivals:
        envelope = arrival.envelope
        span = tracing.span(
            f"route {envelope.name}",
            envelope.traceparent,
            tracestate=envelope.tracestate,
            kind="CONSUMER",
            start_time=started,
            attributes={
                **_MESSAGING,
                "messaging.operation.name": "route",
                "messaging.destination.name": topic,
                "messaging.message.id": envelope.id,
                "cloudevents.event_id": envelope.id,
                "cloudevents.event_source": envelope.source,
                "cloudevents.event_type": envelope.name,
            },
        )
        span.end()
        context = tracing.traceparent(span)
        envelope = msgspec.structs.replace(
            envelope, traceparent=context.traceparent, tracestate=context.tracestate
        )
        out.append(Arrival(envelope, arrival.arrived_at))
    return out


def correlated(
    offers: Sequence[Offer], changes: Sequence[StateChange], started: int
) -> dict[tuple[str, str], str]:
    """A ``correlate`` span for each of ``offers``, started at ``started`` (ns) and ended
    now; return each one's traceparent by (sensor id, event id), for :func:`fired`."""
    held = {(c.sensor_id, c.key): sorted(c.events) for c in changes}
    parents = {}
    for offer in offers:
        envelope = offer.arrival.envelope
        span = tracing.span(
            f"correlate {offer.sensor_id}",
            envelope.traceparent,
            tracestate=envelope.tracestate,
            start_time=started,
            attributes={
                "tripwire.sensor.id": offer.sensor_id,
                "tripwire.dependency": offer.dep,
                "tripwire.correlation.key": offer.key,
                "tripwire.held": held.get((offer.sensor_id, offer.key), []),
                "cloudevents.event_id": envelope.id,
            },
        )
        span.end()
        parents[offer.sensor_id, envelope.id] = tracing.traceparent(span).traceparent  # same state
    return parents


def fired(fires: list[Fire], parents: Mapping[tuple[str, str], str] | None = None) -> list[Fire]:
    """A ``fire`` span for each of ``fires`` (see the module docs); return the fires,
    each carrying its span's context for the run request."""
    out = []
    for fire in fires:
        last = fire.events[-1] if fire.events else None
        parent = last.traceparent if last else None
        if last is not None and parents:
            parent = parents.get((fire.sensor.id, last.id), parent)
        span = tracing.span(
            f"fire {fire.sensor.id}",
            parent,
            tracestate=last.tracestate if last else None,
            links=[e.traceparent for e in fire.events],
            attributes=_fire_attributes(fire),
        )
        span.end()
        context = tracing.traceparent(span)
        out.append(
            msgspec.structs.replace(
                fire, traceparent=context.traceparent, tracestate=context.tracestate
            )
        )
    return out


def now() -> int:
    """The time a batch's spans start at, in nanoseconds since the epoch."""
    return time.time_ns()


def _fire_attributes(fire: Fire) -> dict[str, Any]:
    return {
        "tripwire.sensor.id": fire.sensor.id,
        "tripwire.flow": fire.sensor.flow.name,
        "tripwire.run.name": fire.run_name,
        "tripwire.events": [e.id for e in fire.events],
    }

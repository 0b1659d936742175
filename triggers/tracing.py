"""W3C trace context on events: the ``traceparent`` and ``tracestate`` a CloudEvent carries.

An event joins the trace of whoever published it, through the CloudEvents
distributed-tracing extension (``ce_traceparent`` and ``ce_tracestate`` headers in
Kafka binary mode). :func:`current` takes the trace context where an event enters,
and :func:`stamp` puts it on the event.

Tracing off costs nothing. OpenTelemetry is imported only when the process has
imported it already (so a caller may have a current span), or when tracing is
configured by the standard variables: ``OTEL_TRACES_EXPORTER``,
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, unless
``OTEL_SDK_DISABLED=true``. That is decided once per process, at the first event
that enters (a process that imports OpenTelemetry only after that does not
propagate), and kept in a module flag: off, :func:`current` returns after one test.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from triggers.errors import ConfigurationError

if TYPE_CHECKING:
    from triggers.envelope import Envelope

__all__ = [
    "TraceContext",
    "carried",
    "configure",
    "configured",
    "current",
    "enabled",
    "span",
    "spans",
    "stamp",
    "traceparent",
]

log = logging.getLogger(__name__)

_EXTRA = "pip install 'tripwire[otel]'"
# W3C Trace Context, version 00 (a later version may add fields after a dash).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?")


class TraceContext(NamedTuple):
    """A W3C trace context: what an event carries as ``traceparent`` and ``tracestate``."""

    traceparent: str
    tracestate: str | None = None
    # The OpenTelemetry context it was taken from, when it is this process's current one.
    context: Any = None


_on: bool | None = None  # None until the first event decides
_lock = threading.Lock()
_trace: Any = None  # opentelemetry.trace, once on
_tracer: Any = None
_context: Any = None  # opentelemetry.context.get_current, once on
_root: Any = None  # an empty context, whose spans start traces of their own, once on

spans = False
"""Whether this process records spans (a tracer provider is set up): the engine makes its
own spans only then, and checks this first, on the hot path."""


def current(headers: Mapping[str, str] | None = None) -> TraceContext | None:
    """The trace context an event that enters now joins: the current span's, else the
    W3C ``traceparent`` (and ``tracestate``) of ``headers``, an incoming request's; or
    None, when there is neither (or ``headers`` has a malformed one)."""
    if _on is None:
        _decide()
    if _on:
        found = traceparent(_trace.get_current_span())
        if found.traceparent:
            return found._replace(context=_context())
    return None if headers is None else carried(headers)


def carried(headers: Mapping[str, Any], prefix: str = "") -> TraceContext | None:
    """The W3C trace context that ``headers`` carry as ``PREFIXtraceparent`` and
    ``PREFIXtracestate``; None when there is none, or a malformed one."""
    traceparent = headers.get(prefix + "traceparent")
    if not isinstance(traceparent, str) or not _TRACEPARENT.fullmatch(traceparent):
        return None
    tracestate = headers.get(prefix + "tracestate")
    return TraceContext(
        traceparent, tracestate if isinstance(tracestate, str) and tracestate else None
    )


def stamp(envelope: Envelope, parent: TraceContext | None, topic: str) -> Envelope:
    """``envelope`` joined to the trace of ``parent``, on its way to ``topic``.

    An event that carries a ``traceparent`` already keeps it: a CloudEvent's own, or a
    bus message's, set where the event was made. With a tracer provider set up in this
    process (:func:`configure`, or the application's own), the event gets a producer
    span ``create TOPIC``, a child of ``parent``, and carries that span's context;
    without one it carries ``parent`` itself. The messaging semantic conventions of
    OpenTelemetry ask a producer for a *creation context* unique to each message, the
    context of its "create" span, so that each consumer can link to the very message
    it read; "create" rather than "send" because the API and the event sources send
    events in batches. The span ends at once: it marks the event's creation.
    """
    if parent is None or envelope.traceparent is not None:
        return envelope
    if _on:
        parent = _child(parent, envelope, topic)
    return msgspec.structs.replace(
        envelope, traceparent=parent.traceparent, tracestate=parent.tracestate
    )


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard ``OTEL_*`` variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Set up OpenTelemetry's SDK as the ``OTEL_*`` variables say: a tracer provider (with
    ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``) exporting
    in batches to ``OTEL_TRACES_EXPORTER`` (default ``otlp``, over HTTP unless
    ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``; ``console``; ``none``). Returns False, and sets
    up nothing, when the application has set up a tracer provider already.

    Raises:
        ConfigurationError: the ``otel`` extra is not installed, or an exporter is unknown.
    """
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            f"tracing is configured (OTEL_*), but the OpenTelemetry SDK is not installed: {_EXTRA}"
        ) from None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False
    provider = TracerProvider(resource=Resource.create())
    for exporter in _exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def _exporters(environ: Mapping[str, str]) -> list[Any]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` names, through the SDK's entry points."""
    from importlib.metadata import entry_points

    found = []
    for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(","):
        name = name.strip()
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            name = "otlp_proto_grpc" if protocol.strip().lower() == "grpc" else "otlp_proto_http"
        points = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not points:
            hint = _EXTRA if name == "otlp_proto_http" else "install the package that provides it"
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER names the span exporter {name!r}, which is not "
                f"installed here: {hint}"
            )
        found.append(next(iter(points)).load()())
    return found


def _decide() -> None:
    """Turn tracing on or off for this process (see the module docs)."""
    global _on, _trace, _tracer, _context, _root, spans
    with _lock:
        if _on is not None:
            return
        wanted = configured()
        if "opentelemetry.trace" not in sys.modules and not wanted:
            _on = False
            return
        try:
            from opentelemetry import context, trace
        except ImportError:
            log.warning(
                "tracing is configured (OTEL_*), but OpenTelemetry is not installed: %s", _EXTRA
            )
            _on = False
            return
        if wanted:
            try:
                configure()
            except ConfigurationError as exc:  # events still carry their callers' context
                log.warning("traces are not exported: %s", exc)
        _trace, _context = trace, context.get_current
        _root = context.Context()
        _tracer = trace.get_tracer("tripwire")
        provider = trace.get_tracer_provider()
        spans = not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
        _on = True


def enabled() -> bool:
    """Decide now, rather than at the first event, whether tracing is on here (see the
    module docs); the engine does as it starts. Return whether it is."""
    if _on is None:
        _decide()
    return bool(_on)


def span(
    name: str,
    parent: str | None,
    *,
    tracestate: str | None = None,
    kind: str = "INTERNAL",
    links: Sequence[str | None] = (),
    attributes: Mapping[str, Any] | None = None,
    start_time: int | None = None,
) -> Any:
    """Start a span (only while :data:`spans`): a child of the span whose W3C
    ``traceparent`` is ``parent``, or the root of a new trace when that is None or
    malformed (``tracestate``: the parent's vendor state, which the span keeps), linked
    to the span of each traceparent in ``links``. ``kind`` names a
    ``SpanKind``; ``start_time`` is in nanoseconds since the epoch. The caller ends it."""
    context = _extract(parent, tracestate) if parent else None
    if context is None:
        context = _root  # not the current span's: a worker's spans follow their events
    linked = [_trace.Link(c) for c in (_span_context(p) for p in links if p) if c is not None]
    return _tracer.start_span(
        name,
        context=context,
        kind=_trace.SpanKind[kind],
        attributes=attributes,
        links=linked,
        start_time=start_time,
    )


def traceparent(of: Any) -> TraceContext:
    """The W3C trace context of span ``of``, to carry onward ("" for no valid span)."""
    found = of.get_span_context()
    if not found.is_valid:
        return TraceContext("")
    state = found.trace_state.to_header() if found.trace_state else None
    return TraceContext(
        f"00-{found.trace_id:032x}-{found.span_id:016x}-{found.trace_flags:02x}", state or None
    )


def _extract(traceparent: str, tracestate: str | None = None) -> Any:
    """A context whose current span is the remote one ``traceparent`` names (None when
    that is malformed): what the W3C propagator gives, for a fifth of its cost."""
    remote = _span_context(traceparent, tracestate)
    return None if remote is None else _trace.set_span_in_context(_trace.NonRecordingSpan(remote))


def _span_context(traceparent: str, tracestate: str | None = None) -> Any:
    """The span context a traceparent names, or None when it is malformed or invalid
    (version ff, or an id of zeros)."""
    if not _TRACEPARENT.fullmatch(traceparent) or traceparent.startswith("ff"):
        return None
    trace_id, span_id = int(traceparent[3:35], 16), int(traceparent[36:52], 16)
    if not trace_id or not span_id:
        return None
    return _trace.SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=_trace.TraceFlags(int(traceparent[53:55], 16)),
        trace_state=_trace.TraceState.from_header([tracestate]) if tracestate else None,
    )


def _child(parent: TraceContext, envelope: Envelope, topic: str) -> TraceContext:
    """The context of a producer span for ``envelope``, a child of ``parent`` (or
    ``parent`` itself when no tracer provider is set up: the no-op span is the parent's)."""
    context = parent.context
    if context is None:
        context = _extract(parent.traceparent, parent.tracestate)
    span = _tracer.start_span(
        f"create {topic}",
        context=context,
        kind=_trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.name": "create",
            "messaging.operation.type": "create",
            "messaging.destination.name": topic,
            "messaging.message.id": envelope.id,
            "messaging.kafka.message.key": envelope.name,
            "cloudevents.event_id": envelope.id,
            "cloudevents.event_source": envelope.source,
            "cloudevents.event_spec_version": "1.0",
            "cloudevents.event_type": envelope.name,
        },
    )
    span.end()
    found = traceparent(span)
    return found if found.traceparent else parent

"""Publish an event inside a span: the run it triggers, and the runs after it, join the trace.

With Jaeger (or any OTLP backend) listening, and the `otel` extra installed:

    docker run -d -p 16686:16686 -p 4318:4318 jaegertracing/all-in-one
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318
    OTEL_SERVICE_NAME=tripwire tripwire dev examples/ &
    OTEL_SERVICE_NAME=nightly-etl python examples/traced_publish.py

then open http://localhost:16686 and find the trace of "load sales". Without a
collector, `OTEL_TRACES_EXPORTER=console` prints the spans instead.
"""

from triggers import publish, tracing


def main() -> None:
    # Imported here: `tripwire dev examples/` imports this file, with or without the extra.
    from opentelemetry import trace

    tracing.enabled()  # sets OpenTelemetry's SDK up as the OTEL_* variables say
    with trace.get_tracer("nightly-etl").start_as_current_span("load sales") as span:
        event_id = publish("data_updated", {"table": "sales", "rows": 1234, "day": "2026-11-23"})
    trace_id = span.get_span_context().trace_id
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()  # sends what is still batched
    print(f"published {event_id} in trace {trace_id:032x}")


if __name__ == "__main__":
    main()

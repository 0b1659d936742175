"""faust apps beside tripwire: typed events and run lifecycle events, and publishing.

tripwire writes CloudEvents in Kafka binary mode: an event's name, id, source and time
are ``ce_*`` headers and the value is only its JSON payload. A faust codec sees the
value alone, so reading goes through a :class:`faust.Schema` instead, whose
``loads_value`` gets the whole message, headers included, and hands it to the engine's
own decoder (:func:`triggers.envelope.decode`)::

    app = faust.App("sales-loader", **broker_settings())
    publisher = EventPublisher(app)

    @app.agent(run_events_topic(app))
    async def follow(runs):
        async for run in runs:  # RunEvent
            if run.finished:
                print(run.run_name, run.phase)

Needs the faust extra: ``pip install 'tripwire[faust]'`` (docs/faust.md).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import msgspec
from aiokafka.errors import KafkaError

from triggers.envelope import Envelope, decode, encode, make_envelope
from triggers.error_text import exception_text
from triggers.errors import ConfigurationError, EventDecodeError, PublishError
from triggers.settings import get_settings
from triggers.spec import FINAL_PHASES

try:
    import faust
    from faust.exceptions import ValueDecodeError
    from faust.types import Message
    from faust.types.auth import CredentialsT
except ImportError:
    raise ConfigurationError(
        "triggers.faust needs faust (faust-streaming): pip install 'tripwire[faust]'"
    ) from None

__all__ = [
    "EventPublisher",
    "EventSchema",
    "RunEvent",
    "RunEventSchema",
    "TripwireEvent",
    "broker_settings",
    "events_topic",
    "run_events_topic",
]


# isodates: a record sent on as JSON (value_type=TripwireEvent) reads its times back as datetimes.
# mypy runs where faust is not installed, and then checks these options against object's.
class TripwireEvent(faust.Record, serializer="json", isodates=True):  # type: ignore[call-arg]
    """A tripwire event: its name (also the record key), id, source, time and payload,
    and the W3C trace context it joins (docs/tracing.md).

    ``time`` is None when the publisher set none; ``traceparent`` and ``tracestate``
    when the event carries no trace context.
    """

    name: str
    id: str
    source: str
    time: datetime | None
    payload: dict[str, Any]
    traceparent: str | None = None
    tracestate: str | None = None


class RunEvent(faust.Record, serializer="json", isodates=True):  # type: ignore[call-arg]
    """A phase change of a run, or of one of its attempts, from ``tripwire.run-events``.

    ``id`` is ``PROJECT.DOMAIN.phase-N``; the engine may publish a change again after a
    crash, under the same id. ``attempt`` is None for the run itself. ``error`` is set for
    a failure (``code``, ``kind``, ``message``...), and ``output_uri`` once it SUCCEEDED.
    """

    id: str
    run_name: str
    project: str
    domain: str
    flow: str
    phase: str
    attempt: int | None
    occurred_at: datetime
    error: dict[str, Any] | None
    output_uri: str | None

    @property
    def finished(self) -> bool:
        """True when the run itself reached a final phase: SUCCEEDED, FAILED, ABORTED or
        TIMED_OUT."""
        return self.attempt is None and self.phase in FINAL_PHASES


class EventSchema(faust.Schema):
    """``tripwire.events`` for faust: keys are event names, values :class:`TripwireEvent`.

    Sending a :class:`TripwireEvent` writes the record ``triggers.publish`` writes (give
    ``key=event.name``); bytes pass through as they are, so ``group_by`` and ``forward``
    keep the headers and the payload they came with.
    """

    def __init__(self) -> None:
        super().__init__(key_type=str, key_serializer="raw", value_type=TripwireEvent)

    def loads_value(self, app: faust.App, message: Message, **_: Any) -> TripwireEvent:
        return TripwireEvent(**msgspec.structs.asdict(_envelope(message)))

    def dumps_value(
        self, app: faust.App, value: Any, *, serializer: Any = None, headers: Any
    ) -> tuple[bytes, Any]:
        if isinstance(value, bytes):
            return value, headers
        if not isinstance(value, TripwireEvent):
            raise PublishError(
                f"a tripwire events topic takes TripwireEvent values, not "
                f"{type(value).__name__}; publish with EventPublisher(app).send(name, payload)."
            )
        record = encode(Envelope(**value.asdict()))
        return record.value, _merged(headers, record.headers)


class RunEventSchema(faust.Schema):
    """``tripwire.run-events`` for faust: keys are run names, values :class:`RunEvent`.

    The engine alone writes these events, so values pass through only as bytes (``forward``
    and ``group_by``); send a :class:`RunEvent` to a topic of your own with
    ``value_type=RunEvent`` instead.
    """

    def __init__(self) -> None:
        super().__init__(key_type=str, key_serializer="raw", value_type=RunEvent)

    def loads_value(self, app: faust.App, message: Message, **_: Any) -> RunEvent:
        envelope = _envelope(message)
        data = envelope.payload
        try:
            run = data["execution_id"]
            return RunEvent(
                id=envelope.id,
                run_name=run["name"],
                project=run["project"],
                domain=run["domain"],
                flow=data["flow"],
                phase=data["phase"],
                attempt=data["attempt"],
                occurred_at=datetime.fromisoformat(data["occurred_at"]),
                error=data.get("error"),
                output_uri=data.get("output_uri"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueDecodeError(
                f"event {envelope.id!r} ({envelope.name}) is not a run lifecycle event: "
                f"{exception_text(exc)}"
            ) from None

    def dumps_value(
        self, app: faust.App, value: Any, *, serializer: Any = None, headers: Any
    ) -> tuple[bytes, Any]:
        if isinstance(value, bytes):
            return value, headers
        raise PublishError(
            "tripwire.run-events holds the engine's own lifecycle events; forward the "
            "event as it came, or send it to a topic of your own with value_type=RunEvent."
        )


def _envelope(message: Message) -> Envelope:
    """The event in a consumed message; faust acknowledges a bad one and raises it in the agent."""
    try:
        return decode(message.value, message.headers or ())
    except EventDecodeError as exc:
        raise ValueDecodeError(
            f"{message.topic}[{message.partition}]@{message.offset}: {exc}"
        ) from None


def _merged(headers: Any, event_headers: list[tuple[str, bytes]]) -> Any:
    """The caller's headers, then the event's; faust passes a dict, or the list the caller gave."""
    if isinstance(headers, dict):
        headers.update(event_headers)
        return headers
    return [*(headers or ()), *event_headers]


class EventPublisher:
    """Publishes tripwire events through a faust app's own producer.

    The records are those ``triggers.publish`` writes: the same validation, key,
    ``ce_*`` headers and JSON payload, on ``TRIPWIRE_TOPIC_EVENTS`` by default.
    """

    def __init__(self, app: faust.App, *, topic: str | None = None) -> None:
        self._settings = get_settings()
        self._topic = app.topic(topic or self._settings.topic_events, schema=EventSchema())

    async def send(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        source: str | None = None,
        time: datetime | str | None = None,
    ) -> str:
        """Publish ``name`` with ``payload``, and return the event id once the broker has it.

        It sends at once, even in an app with ``stream_publish_on_commit``: there faust
        would send only once the agent's current event is committed, which waits for the
        agent. Give ``id`` from the input (``f"{order.id}:data_updated"``), so that an
        input faust delivers again publishes the same event, which starts no second run.

        Raises:
            PublishError: invalid name or payload, or the broker did not acknowledge it
                within TRIPWIRE_PUBLISH_TIMEOUT.
        """
        settings = self._settings
        envelope, _ = make_envelope(
            name,
            payload,
            id=id,
            source=source or settings.source,
            time=time,
            max_payload_bytes=settings.max_payload_bytes,
        )
        event = TripwireEvent(**msgspec.structs.asdict(envelope))
        try:
            sent = await self._topic.send(key=envelope.name, value=event, force=True)
            # Shielded: faust completes the future later, and a cancelled one makes it log.
            await asyncio.wait_for(asyncio.shield(sent), settings.publish_timeout)
        except TimeoutError:
            raise PublishError(
                f"event {name!r} was not acknowledged by the broker within "
                f"{settings.publish_timeout:g}s (TRIPWIRE_PUBLISH_TIMEOUT)"
            ) from None
        except (KafkaError, OSError) as exc:
            raise PublishError(f"cannot publish event {name!r}: {exc}") from exc
        return envelope.id


def broker_settings() -> dict[str, Any]:
    """faust ``App`` settings that reach tripwire's Kafka as the engine does.

    ``broker`` comes from TRIPWIRE_KAFKA_BOOTSTRAP, or from a running ``tripwire dev``;
    ``broker_credentials`` from the TRIPWIRE_KAFKA_* security settings, through the same
    arguments the engine's clients get; the session timeout is
    TRIPWIRE_KAFKA_SESSION_TIMEOUT, because the embedded broker holds a group join for
    half of it (faust's 60 s default would mean 30 s).

    Raises:
        ConfigurationError: no broker is configured, or a certificate, key or token
            provider of the security settings cannot be loaded.
    """
    settings = get_settings()
    connection = settings.kafka_connection()
    hosts = connection["bootstrap_servers"].split(",")
    return {
        "broker": ";".join(f"kafka://{host.strip()}" for host in hosts),
        "broker_credentials": _credentials(connection),
        "broker_session_timeout": settings.kafka_session_timeout,
        "broker_heartbeat_interval": settings.kafka_session_timeout / 3,
    }


def _credentials(connection: dict[str, Any]) -> CredentialsT | None:
    """aiokafka's security arguments as faust's credentials, which faust turns back into
    the same arguments for its producer, consumers and admin client."""
    protocol = connection.get("security_protocol", "PLAINTEXT")
    context = connection.get("ssl_context")
    mechanism = connection.get("sasl_mechanism")
    if mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(
            oauth_cb=connection["sasl_oauth_token_provider"], ssl_context=context
        )
    if mechanism is not None:
        return faust.SASLCredentials(
            username=connection["sasl_plain_username"],
            password=connection["sasl_plain_password"],
            ssl_context=context,
            mechanism=mechanism,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return None


def events_topic(app: faust.App, **options: Any) -> faust.TopicT:
    """The app's topic of tripwire events (TRIPWIRE_TOPIC_EVENTS), read as :class:`TripwireEvent`.

    ``options`` go to ``app.topic`` (``partitions``, ``maxsize``...).
    """
    return app.topic(get_settings().topic_events, schema=EventSchema(), **options)


def run_events_topic(app: faust.App, **options: Any) -> faust.TopicT:
    """The app's topic of run lifecycle events (TRIPWIRE_TOPIC_RUN_EVENTS), read as
    :class:`RunEvent`; ``options`` go to ``app.topic``."""
    return app.topic(get_settings().topic_run_events, schema=RunEventSchema(), **options)

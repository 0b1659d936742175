"""Publishing events: ``publish``, ``publish.aio``, ``safe_publish`` and ``safe_publish.aio``.

All publishing in a process goes through one long-lived aiokafka producer that
runs on a private event loop in a daemon thread. The sync form blocks on it
and the async form awaits it, so neither depends on the caller's loop (a
producer bound to a caller's loop would leak when that loop closes), and a
script that publishes in a loop reuses one connection.

An event joins the caller's trace: its trace context is taken in the caller's
thread, where the current span is (:mod:`triggers.tracing`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from triggers import tracing
from triggers.envelope import KafkaRecord, encode, make_envelope
from triggers.errors import ConfigurationError, KafkaSecurityError, PublishError

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from triggers.kafka_security import KafkaSecurity
    from triggers.settings import Settings

__all__ = ["publish", "safe_publish"]

log = logging.getLogger(__name__)


_Cluster = tuple[str, "KafkaSecurity"]  # a producer's broker, and how it connects there


class _ProducerThread:
    """One producer per (process, broker and security), on a private loop in a daemon thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._producers: dict[_Cluster, AIOKafkaProducer] = {}

    def submit(self, coro: Coroutine[Any, Any, str]) -> concurrent.futures.Future[str]:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child inherits the object but not the thread: start afresh.
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="tripwire-publish", daemon=True
                ).start()
                self._loop, self._pid, self._producers = loop, os.getpid(), {}
            return self._loop

    async def send(self, settings: Settings, record: KafkaRecord) -> None:
        from aiokafka.errors import KafkaError  # aiokafka costs 0.1 s: only to publish

        cluster = (settings.require_bootstrap(), settings.kafka_security)
        producer = await self._producer(cluster, settings)
        try:
            await producer.send_and_wait(
                settings.topic_events, record.value, key=record.key, headers=record.headers
            )
        except (KafkaError, OSError):
            await self._discard(cluster)
            raise

    async def _producer(self, cluster: _Cluster, settings: Settings) -> AIOKafkaProducer:
        producer = self._producers.get(cluster)
        if producer is None:
            from aiokafka import AIOKafkaProducer

            from triggers.kafka_client import connect

            connection = settings.kafka_connection()
            producer = AIOKafkaProducer(
                **connection,
                acks="all",
                request_timeout_ms=int(settings.publish_timeout * 1000),
                max_request_size=settings.max_payload_bytes + 64 * 1024,
                linger_ms=0,
            )
            try:
                await connect(producer, connection)
            except BaseException:
                await producer.stop()
                raise
            self._producers[cluster] = producer
        return producer

    async def _discard(self, cluster: _Cluster) -> None:
        producer = self._producers.pop(cluster, None)
        if producer is not None:
            await producer.stop()

    def close(self) -> None:
        """Flush and stop every producer; called at interpreter exit."""
        loop = self._loop
        if loop is None or self._pid != os.getpid() or not loop.is_running():
            return

        async def stop_all() -> None:
            for cluster in list(self._producers):
                await self._discard(cluster)

        try:
            asyncio.run_coroutine_threadsafe(stop_all(), loop).result(timeout=5)
        except Exception as exc:  # exit must not fail because a broker went away
            log.debug("closing tripwire producers failed: %s", exc)
        loop.call_soon_threadsafe(loop.stop)


_PRODUCERS = _ProducerThread()
atexit.register(_PRODUCERS.close)


async def _send(
    name: str,
    payload: Any,
    *,
    id: str | None,
    source: str | None,
    time: datetime | str | None,
    settings: Settings,
    trace: tracing.TraceContext | None,
) -> str:
    envelope, _ = make_envelope(
        name,
        payload,
        id=id,
        source=source or settings.source,
        time=time,
        max_payload_bytes=settings.max_payload_bytes,
    )
    record = encode(tracing.stamp(envelope, trace, settings.topic_events))
    bootstrap = settings.require_bootstrap()
    from aiokafka.errors import KafkaError

    try:
        await asyncio.wait_for(_PRODUCERS.send(settings, record), settings.publish_timeout)
    except TimeoutError:
        raise PublishError(
            f"event {name!r} was not acknowledged by the Kafka broker at {bootstrap} within "
            f"{settings.publish_timeout:g}s; check that the broker is running "
            "(`tripwire dev` or TRIPWIRE_KAFKA_BOOTSTRAP)."
        ) from None
    except KafkaSecurityError as exc:
        raise PublishError(f"cannot publish event {name!r}: {exc}") from exc
    except (KafkaError, OSError) as exc:
        raise PublishError(
            f"cannot publish event {name!r} to the Kafka broker at {bootstrap}: {exc}; "
            "check that the broker is running (`tripwire dev` or TRIPWIRE_KAFKA_BOOTSTRAP)."
        ) from exc
    return envelope.id


def _settings_or_error() -> Settings:
    from triggers.settings import get_settings  # built on first use, not at import

    try:
        return get_settings()
    except ConfigurationError:
        raise
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        raise ConfigurationError(f"invalid TRIPWIRE_* settings: {exc}") from exc


def _submit(
    name: str,
    payload: Any,
    *,
    id: str | None,
    source: str | None,
    time: datetime | str | None,
) -> concurrent.futures.Future[str]:
    settings = _settings_or_error()
    trace = tracing.current()
    return _PRODUCERS.submit(
        _send(name, payload, id=id, source=source, time=time, settings=settings, trace=trace)
    )


class _Publish:
    """``publish(name, payload)``: send an event and return its id once the broker has it."""

    def __call__(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        source: str | None = None,
        time: datetime | str | None = None,
    ) -> str:
        """Publish ``name`` with ``payload`` and block until the broker acknowledges it.

        Returns:
            The event id (``id`` or a fresh uuid4).

        Raises:
            PublishError: invalid name or payload, broker unreachable or too slow
                (bounded by TRIPWIRE_PUBLISH_TIMEOUT, default 10 s).
            ConfigurationError: no broker is configured.
        """
        return _submit(name, payload, id=id, source=source, time=time).result()

    async def aio(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        source: str | None = None,
        time: datetime | str | None = None,
    ) -> str:
        """The awaitable form of :func:`publish`; same arguments, result and errors."""
        return await asyncio.wrap_future(_submit(name, payload, id=id, source=source, time=time))


class _SafePublish:
    """``safe_publish(name, payload)``: like publish, but never raises."""

    def __call__(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        source: str | None = None,
        time: datetime | str | None = None,
    ) -> str | None:
        """Publish, or log why not and return None. Does nothing in a local run.

        A local run is one not started by the engine and with no broker configured
        (neither TRIPWIRE_KAFKA_BOOTSTRAP nor a running `tripwire dev`).
        """
        try:
            if _is_local_run():
                log.info("safe_publish: local run, event %r not published", name)
                return None
            return publish(name, payload, id=id, source=source, time=time)
        except Exception as exc:
            log.warning("safe_publish: event %r not published: %s", name, exc)
            return None

    async def aio(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        source: str | None = None,
        time: datetime | str | None = None,
    ) -> str | None:
        """The awaitable form of :func:`safe_publish`."""
        try:
            if _is_local_run():
                log.info("safe_publish: local run, event %r not published", name)
                return None
            return await publish.aio(name, payload, id=id, source=source, time=time)
        except Exception as exc:
            log.warning("safe_publish: event %r not published: %s", name, exc)
            return None


def _is_local_run() -> bool:
    from triggers.settings import get_settings

    settings = get_settings()
    return settings.run_context is None and settings.kafka_bootstrap is None


publish = _Publish()
safe_publish = _SafePublish()

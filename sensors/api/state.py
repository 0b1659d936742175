"""What the API's routes share: the per-app state (store, broker, credentials) and the
errors that become JSON bodies.

The app (:mod:`sensors.api.app`) builds one :class:`ApiState`; the routes
(:mod:`sensors.api.routes`, :mod:`sensors.api.runs`, :mod:`sensors.api.web`) read it
with :func:`state_of`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Path, Request
from pydantic import BaseModel, Field

from sensors.api.auth import Authenticator, Permission, Principal, RateLimiter
from sensors.api.metrics import Metrics
from sensors.api.recent import RecentEvents
from sensors.runs.objects import ObjectStore
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from sensors.stages.kafka import ensure_topics
from triggers.errors import KafkaSecurityError
from triggers.kafka_client import connect
from triggers.settings import Settings

__all__ = [
    "SCOPE",
    "Domain",
    "Project",
    "RunName",
    "error_responses",
    "TOKEN_COOKIE",
    "ApiState",
    "BrokerUnavailable",
    "ErrorBody",
    "RateLimited",
    "state_of",
]

log = logging.getLogger(__name__)

_BROKER_RETRY = 2.0  # seconds between attempts to reach a broker that was down


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: str = Field(description="Machine-readable kind, e.g. `unauthorized`, `not_found`.")
    message: str = Field(description="What was wrong, and what to do instead.")


class BrokerUnavailable(Exception):
    """Raised when the Kafka broker cannot be reached (503)."""


@dataclass
class ApiState:
    """What the routes use; one per app."""

    settings: Settings
    store: RunStore
    auth: Authenticator
    limiter: RateLimiter
    metrics: Metrics
    recent: RecentEvents
    _producer: AIOKafkaProducer | None = None
    _last_try: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def producer(self) -> AIOKafkaProducer:
        """The started producer; connects (again) if the broker was down.

        Raises:
            BrokerUnavailable: the broker cannot be reached now.
        """
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                if time.monotonic() - self._last_try < _BROKER_RETRY:
                    raise BrokerUnavailable(self._down_message())
                self._last_try = time.monotonic()
                s = self.settings
                connection = s.kafka_connection()
                producer = AIOKafkaProducer(
                    **connection,
                    acks="all",
                    # Concurrent requests share produce requests: on a broker that takes
                    # ~3 ms per request, batching is what lets the API keep up.
                    linger_ms=5,
                    request_timeout_ms=int(s.publish_timeout * 1000),
                    max_request_size=s.max_payload_bytes + 64 * 1024,
                )
                try:
                    await asyncio.wait_for(connect(producer, connection), s.publish_timeout)
                    await ensure_topics(s, [s.topic_events, s.topic_run_requests])
                except KafkaSecurityError as exc:
                    await producer.stop()
                    log.error("the API cannot publish: %s", exc)
                    raise BrokerUnavailable(f"nothing was published: {exc}") from exc
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise BrokerUnavailable(f"{self._down_message()} ({exc})") from exc
                self._producer = producer
        return self._producer

    async def forget_producer(self) -> None:
        """Drop a producer whose broker failed; the next call connects anew."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    def _down_message(self) -> str:
        return (
            f"the Kafka broker at {self.settings.kafka_bootstrap} is unreachable; nothing was "
            "published, try again"
        )

    async def runs(self) -> RunService:
        objects = ObjectStore(self.settings.objects_root)
        return RunService(self.settings, self.store, objects, await self.producer())

    def authorize(self, request: Request, *permissions: Permission) -> Principal:
        """The caller, if it may do one of ``permissions``; rate limited per caller.

        A bearer header wins; the web page's cookie stands in for it.
        """
        header = request.headers.get("authorization")
        if header is None and (cookie := request.cookies.get(TOKEN_COOKIE)):
            header = f"Bearer {cookie}"
        principal = self.auth.bearer(header)
        principal.require(*permissions)
        self.limit(principal)
        return principal

    def limit(self, principal: Principal) -> None:
        wait = self.limiter.take(principal.name)
        if wait is not None:
            raise RateLimited(wait)


TOKEN_COOKIE = "tripwire_token"


class RateLimited(Exception):
    """Raised when a caller went over its request rate (429 with Retry-After)."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.tripwire
    return state


# What the routes share: path parameters and the error responses they document.
SCOPE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

Project = Annotated[str, Path(pattern=SCOPE, description="Project name.")]
Domain = Annotated[str, Path(pattern=SCOPE, description="Domain name.")]
RunName = Annotated[str, Path(max_length=253, description="Run name.")]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that may answer with these error statuses."""
    return {status: {"model": ErrorBody} for status in statuses}

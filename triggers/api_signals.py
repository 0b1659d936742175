"""Waits and signals through the tripwire HTTP API, for runs that cannot reach the store.

With ``TRIPWIRE_API_URL`` set, ``Event`` and ``wait_for_event`` use :class:`ApiSignals`:
a run in a pod needs an API token (``TRIPWIRE_API_TOKEN``), not database
credentials. The API's answers become the errors the run store raises, so a flow
behaves the same either way.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from triggers.errors import (
    ConfigurationError,
    RunNotFoundError,
    SignalError,
    SignalNotFoundError,
    StoreUnavailableError,
    TripwireError,
)
from triggers.settings import Settings
from triggers.waits import Signal

__all__ = ["ApiSignals"]

_TIMEOUT = 30.0  # seconds for one request: the API answers from its store, at once
_TRIES = 3  # requests refused for the caller's rate (429) are tried again after Retry-After


class ApiSignals:
    """A :class:`~triggers.waits.SignalBackend` on the API at ``settings.api_url``, sending
    ``settings.api_token`` as a bearer token; opened and closed by ``async with``.

    Waiting and signalling need a token of scope ``publish`` (or ``admin``), listing a
    run's waits one of scope ``read`` (or ``admin``); any scope gets one wait.
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.api_url:
            raise ConfigurationError("ApiSignals needs TRIPWIRE_API_URL, the tripwire API's URL")
        self._url = settings.api_url.rstrip("/")
        token = settings.api_token
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> ApiSignals:
        self._client = httpx.AsyncClient(
            base_url=self._url, headers=self._headers, timeout=_TIMEOUT
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def get_signal(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        name: str,
        action_name: str | None = None,
    ) -> Signal | None:
        found = await self._call(
            "GET", _path(project, domain, run_name, name), params=_action(action_name)
        )
        return Signal.model_validate(found) if found is not None else None

    async def list_signals(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        action_name: str | None = None,
        limit: int = 100,
    ) -> list[Signal]:
        # A run that is not there waits for nothing, as in the store.
        params = _action(action_name) | {"limit": str(limit)}
        found = await self._call("GET", _path(project, domain, run_name), params=params)
        return [Signal.model_validate(each) for each in found or ()]

    async def give_signal(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        name: str,
        value: Any,
        action_name: str | None = None,
    ) -> Signal:
        given = await self._call(
            "POST",
            _path(project, domain, run_name, name) + "/signal",
            params=_action(action_name),
            body={"value": value},
            missing=SignalNotFoundError,
        )
        return Signal.model_validate(given)

    async def wait_started(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        name: str,
        expected_type: str,
        timeout_at: datetime | None,
        action_name: str | None = None,
    ) -> Signal:
        body = {
            "expected_type": expected_type,
            "timeout_at": timeout_at.isoformat() if timeout_at is not None else None,
        }
        started = await self._call(
            "PUT",
            _path(project, domain, run_name, name),
            params=_action(action_name),
            body=body,
            missing=RunNotFoundError,
        )
        return Signal.model_validate(started)

    async def time_out(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        name: str,
        action_name: str | None = None,
    ) -> Signal:
        ended = await self._call(
            "POST",
            _path(project, domain, run_name, name) + "/timeout",
            params=_action(action_name),
            missing=SignalNotFoundError,
        )
        return Signal.model_validate(ended)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str],
        body: dict[str, Any] | None = None,
        missing: type[TripwireError] | None = None,
    ) -> Any:
        """The JSON the API answered; None for a 404 when ``missing`` is None, else a
        ``missing`` error.

        Raises:
            ConfigurationError: the API is unreachable, refused the token, or is not one.
            SignalError: the API refused the request (a conflict: signalled already, ended).
            TypeError: the value or the type does not fit the wait.
            StoreUnavailableError: the API failed (5xx); worth trying again.
        """
        answer = await self._send(method, path, params=params, json=body)
        status = answer.status_code
        try:
            data = answer.json()
        except ValueError:
            data = None
        if answer.is_success and data is not None:
            return data
        error = data if isinstance(data, dict) and isinstance(data.get("message"), str) else None
        message = error["message"] if error else answer.reason_phrase
        if status >= 500:
            raise StoreUnavailableError(
                f"the tripwire API at {self._url} failed ({status}: {message}); try again"
            )
        if error is None:
            raise ConfigurationError(
                f"{self._url} answered {method} {path} with {status}, not as the tripwire API "
                "does; set TRIPWIRE_API_URL to the tripwire API's base URL (`tripwire api` "
                "prints it)"
            )
        if status in (401, 403):
            raise ConfigurationError(
                f"the tripwire API at {self._url} refused the token ({status}: {message}); set "
                "TRIPWIRE_API_TOKEN to a token it accepts, of scope publish to wait and signal, "
                "read to list (`tripwire api token` makes one)"
            )
        if status == 404 and message == "Not Found":  # no such route: not this tripwire
            raise ConfigurationError(
                f"the tripwire API at {self._url} has no route {method} {path}; check that "
                "TRIPWIRE_API_URL is its base URL, and that it is a tripwire that serves waits"
            )
        if status == 404:
            if missing is None:
                return None
            raise missing(message)
        if status == 422 and error.get("error") == "invalid_signal":
            raise TypeError(message)
        raise SignalError(message)

    async def _send(self, method: str, path: str, **request: Any) -> httpx.Response:
        assert self._client is not None, "use ApiSignals as `async with ApiSignals(...)`"
        for _ in range(_TRIES):
            try:
                answer = await self._client.request(method, path, **request)
            except httpx.TransportError as exc:
                raise ConfigurationError(
                    f"the tripwire API at {self._url} is unreachable ({type(exc).__name__}: "
                    f"{exc}); check TRIPWIRE_API_URL, and that `tripwire api` serves there"
                ) from exc
            if answer.status_code != 429:
                break
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
        return answer


def _path(project: str, domain: str, run_name: str, name: str | None = None) -> str:
    parts = [project, domain, run_name, "events"] + ([name] if name is not None else [])
    return "/api/v1/runs/" + "/".join(quote(part, safe="") for part in parts)


def _action(action_name: str | None) -> dict[str, str]:
    return {"action": action_name} if action_name is not None else {}

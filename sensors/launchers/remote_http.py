"""What the launchers of systems with an HTTP API share (Prefect, Airflow, Dagster): a
call whose answer is sorted into what to ask again and what is refused for good, the
server a target names, and the credentials it names.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

import httpx

from sensors.launchers.remote import Refused, Unreachable
from sensors.runs.models import RunRecord

__all__ = ["api_call", "secret", "server_url"]


async def api_call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    accept: tuple[int, ...] = (),
    **kwargs: Any,
) -> httpx.Response:
    """Send a request to a remote system's API; ``what`` names it in errors ("Prefect").

    Returns the response when it is a 2xx or its status is in ``accept``.

    Raises:
        Unreachable: no answer, or a 5xx or 429: the caller's next look asks again.
        Refused: any other status: the system rejects the request for good.
    """
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        detail = str(exc) or type(exc).__name__
        raise Unreachable(f"{what} at {url} does not answer: {detail}") from exc
    status = response.status_code
    if 200 <= status < 300 or status in accept:
        return response
    text = response.text[:500]
    if status >= 500 or status == 429:
        raise Unreachable(f"{what} answered {status} to {method} {url}: {text}")
    hint = {
        401: f"; check the credentials the target names for {what}",
        403: f"; the credentials may not do this in {what}",
    }.get(status, "")
    raise Refused(f"{what}{status}", f"{method} {url} answered {status}: {text}{hint}")


def server_url(
    run: RunRecord, *, tls: bool | None, default: str | None, setting: str, what: str
) -> str:
    """The base URL of the server a target URL names (``SCHEME://HOST[:PORT]/...``):
    ``https://HOST[:PORT]``, or ``http://`` for a loopback host unless ``tls`` says;
    ``default``, the worker's ``setting`` (an environment variable), when the target names
    no host.

    Raises:
        Refused: no host in the target, and no ``default``.
    """
    netloc = urlsplit(run.target).netloc
    if not netloc:
        if not default:
            scheme = urlsplit(run.target).scheme
            raise Refused(
                "ServerMissing",
                f"the target names no {what} server and ${setting} is not set on this worker: "
                f"write {scheme}://HOST:PORT/... or set {setting}",
            )
        return default.rstrip("/")
    host = urlsplit(f"//{netloc}").hostname or ""
    secure = tls if tls is not None else not _loopback(host)
    return f"{'https' if secure else 'http'}://{netloc}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secret(name: str | None, what: str) -> str | None:
    """The value of the worker's environment variable ``name`` (None when no name is given),
    which holds a credential that the target names but never carries.

    Raises:
        Refused: the variable is not set on this worker.
    """
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise Refused(
            "SecretMissing",
            f"the target takes {what} from ${name}, which is not set on this worker; set it, "
            "then `tripwire runs recover` the run",
        )
    return value

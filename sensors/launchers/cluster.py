"""What launchers of runs in a Kubernetes cluster share: the API connection.

Attempts, leases, takeover, retries, abort and timeouts are every remote
launcher's (:mod:`sensors.launchers.remote`); a Job or a Workflow is one attempt,
named after the run (:func:`~sensors.launchers.remote.attempt_name`), so that a
replayed create gets 409 and watches the object that exists.
"""

from __future__ import annotations

import os
from typing import Any

from sensors.launchers.remote import Refused, RemoteLauncher
from triggers.errors import ConfigurationError

__all__ = ["ClusterLauncher", "kube_client"]

_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def kube_client(api_url: str | None) -> Any:
    """An ApiClient of the official client's asyncio API: ``api_url``, else in-cluster.

    Raises:
        ConfigurationError: the client is not installed, or there is no cluster to talk to.
    """
    try:
        from kubernetes.aio import client
    except ImportError:
        raise ConfigurationError(
            "k8s:// and argo:// targets need the kubernetes client: pip install 'tripwire[k8s]'"
        ) from None
    config = client.Configuration()
    if api_url:
        config.host = api_url.rstrip("/")
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        config.host = f"https://{host}:{port}"
        with open(f"{_SERVICE_ACCOUNT}/token") as token:
            config.api_key = {"BearerToken": token.read().strip()}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        config.ssl_ca_cert = f"{_SERVICE_ACCOUNT}/ca.crt"
    else:
        raise ConfigurationError(
            "no Kubernetes API to run k8s:// or argo:// targets on: run the worker in the "
            "cluster, or set TRIPWIRE_KUBE_API_URL."
        )
    return client.ApiClient(config)


class ClusterLauncher(RemoteLauncher):
    """A remote launcher whose runs are objects in a Kubernetes cluster."""

    _api: Any = None

    def poll_interval(self) -> float:
        return self._settings.kube_poll_interval

    def api_client(self) -> Any:
        """The connection to the cluster's API (made on first use, so that a worker with no
        cluster runs every other target)."""
        if self._api is None:
            self._api = kube_client(self._settings.kube_api_url)
        return self._api

    def refusal(self, exc: Exception) -> Refused | None:
        """A 4xx from the API server (forbidden, invalid) is for good; 408 and 429 are not."""
        from kubernetes.aio import client

        if not isinstance(exc, client.exceptions.ApiException):
            return None
        if 400 <= exc.status < 500 and exc.status not in (408, 429):
            return Refused(f"Kubernetes{exc.status}", f"{exc.reason}: {str(exc.body)[:500]}")
        return None

    async def disconnect(self) -> None:
        if self._api is not None:
            await self._api.close()

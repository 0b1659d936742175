"""``prefect://[SERVER]/FLOW/DEPLOYMENT``: each attempt is a flow run of a Prefect 3 deployment.

The launcher talks to Prefect's REST API (``SERVER/api``; a target with no
SERVER uses ``TRIPWIRE_PREFECT_URL``, else Prefect's own ``PREFECT_API_URL``,
which may be a Prefect Cloud workspace). An attempt reads the deployment by name
and creates a flow run of it: the run's parameters (or the target's
``parameters`` template) are the flow run's, its name and idempotency key are the
attempt's (:func:`~sensors.launchers.remote.attempt_name`), so a replayed create
gets the flow run that exists (Prefect keeps one per flow and key). The flow
run's state decides the attempt's phase:

- SCHEDULED, PENDING -> INITIALIZING; SCHEDULED Late or AwaitingConcurrencySlot
  -> WAITING_FOR_RESOURCES (no worker took it yet, or a concurrency limit holds
  it); AwaitingRetry -> RUNNING (Prefect retries the flow in the same attempt);
- RUNNING, PAUSED, CANCELLING -> RUNNING;
- COMPLETED -> SUCCEEDED; FAILED -> FAILED (USER: the flow raised); CRASHED ->
  FAILED (SYSTEM: its process or infrastructure died); CANCELLED -> ABORTED.

Abort proposes CANCELLING, unforced, as ``prefect flow-run cancel`` does: Prefect
cancels a run that nothing picked up yet at once, and for a running one the
worker or ``serve`` process that runs it stops it and marks it CANCELLED. Never
forced: that skips the rule that keeps an ended flow run as it ended, so a flow
run that completed a moment before the abort would end up CANCELLED.

Credentials stay on the worker: ``api_key_env`` names the variable of a Prefect
Cloud API key (a bearer token), ``auth_string_env`` that of a self-hosted
server's ``user:password`` (its ``PREFECT_SERVER_API_AUTH_STRING``, basic auth).
"""

from __future__ import annotations

import base64
import logging
import os
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from sensors.launchers.base import template_values
from sensors.launchers.remote import Observation, Refused, RemoteLauncher, Unreachable
from sensors.launchers.remote_http import api_call, secret, server_url
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind
from triggers.targets import PrefectTarget, TargetSpec, render

__all__ = ["PrefectApi", "PrefectLauncher", "phase_of", "ui_url_of"]

log = logging.getLogger(__name__)

_WHAT = "Prefect"
_TIMEOUT = 30.0  # seconds for one API call
_CLOUD_API, _CLOUD_UI = "https://api.prefect.cloud/api", "https://app.prefect.cloud"
_LIVE = {
    "PENDING": AttemptPhase.INITIALIZING,
    "RUNNING": AttemptPhase.RUNNING,
    "PAUSED": AttemptPhase.RUNNING,  # waits for input or a resume: the attempt goes on
    "CANCELLING": AttemptPhase.RUNNING,  # its infrastructure is being stopped
}
_SCHEDULED = {  # state names of the SCHEDULED type
    "Late": AttemptPhase.WAITING_FOR_RESOURCES,
    "AwaitingConcurrencySlot": AttemptPhase.WAITING_FOR_RESOURCES,
    "AwaitingRetry": AttemptPhase.RUNNING,
}
_ENDED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class PrefectLauncher(RemoteLauncher):
    """Creates a flow run of a deployment per attempt and follows its state."""

    family = "prefect"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False)
        self._ids: dict[str, str] = {}  # attempt name -> its flow run's id, once known

    async def disconnect(self) -> None:
        await self._client.aclose()

    async def create(self, run: RunRecord, name: str) -> str | None:
        api = PrefectApi.of(run, self._settings.prefect_url)
        flow, deployment = _names(run)
        found = await self._call(
            api,
            "GET",
            f"/deployments/name/{quote(flow, safe='')}/{quote(deployment, safe='')}",
            accept=(404,),
        )
        if found.status_code == 404:
            raise Refused(
                "DeploymentNotFound",
                f"{_WHAT} at {api.base} has no deployment {flow}/{deployment}; see "
                "`prefect deployment ls` for the FLOW/DEPLOYMENT names",
            )
        options = api.options
        values = template_values(run)
        parameters = (
            dict(run.parameters)
            if options.parameters is None
            else render(options.parameters, values, typed=True)
        )
        body = {
            "name": name,
            "idempotency_key": name,  # a replay gets the flow run this created
            "parameters": parameters,
            "tags": list(options.tags),
        }
        created = await self._call(
            api,
            "POST",
            f"/deployments/{found.json()['id']}/create_flow_run",
            json=body,
            accept=(409,),
        )
        if created.status_code == 409:  # the deployment enforces its parameter schema
            raise Refused(
                "ParametersRejected",
                f"{_WHAT} deployment {flow}/{deployment} rejects the parameters "
                f"{sorted(parameters)}: {_detail(created)}; map them with "
                "@target(..., parameters={...})",
            )
        flow_run = created.json()
        if created.status_code == 200:
            log.info("run %s: flow run %s of %s existed already", run.name, name, run.target)
        self._ids[name] = flow_run["id"]
        return api.link(flow_run["id"])

    async def observe(self, run: RunRecord, name: str) -> Observation:
        api = PrefectApi.of(run, self._settings.prefect_url)
        flow_run = await self._flow_run(api, run, name)
        if flow_run is None:
            message = f"flow run {name} of {run.target} is gone: it was deleted outside tripwire"
            return self.failed("FlowRunMissing", message)
        link = api.link(flow_run["id"])
        state = flow_run.get("state") or {}
        kind = state.get("type")
        if kind in _ENDED:
            self._ids.pop(name, None)
        if kind == "COMPLETED":
            return Observation(AttemptPhase.SUCCEEDED, link=link)
        if kind == "CANCELLED":
            return Observation(AttemptPhase.ABORTED, link=link)
        if kind in ("FAILED", "CRASHED"):
            said = state.get("message") or state.get("name") or kind
            message = f"{_WHAT} flow run {flow_run['name']} ({link}) {kind}: {said}"
            if kind == "FAILED":
                return self.failed("FlowRunFailed", message, ErrorKind.USER)
            return self.failed("FlowRunCrashed", message)
        return Observation(phase_of(kind, state.get("name")), link=link)

    async def stop(self, run: RunRecord, name: str) -> None:
        api = PrefectApi.of(run, self._settings.prefect_url)
        flow_run = await self._flow_run(api, run, name)
        self._ids.pop(name, None)
        kind = ((flow_run or {}).get("state") or {}).get("type")
        if flow_run is None or kind in (*_ENDED, "CANCELLING"):
            return
        cancelling = {
            "type": "CANCELLING",
            "name": "Cancelling",
            "message": f"aborted in tripwire (run {run.name})",
        }
        answer = await self._call(
            api,
            "POST",
            f"/flow_runs/{flow_run['id']}/set_state",
            json={"state": cancelling, "force": False},
            accept=(404,),
        )
        if answer.status_code == 404:
            return  # deleted meanwhile
        result = answer.json()
        now = (result.get("state") or {}).get("type")
        if now not in (*_ENDED, "CANCELLING"):
            reason = (result.get("details") or {}).get("reason") or result.get("status")
            raise Unreachable(f"{_WHAT} did not cancel flow run {name}, {now}: {reason}")
        log.info("run %s: flow run %s is %s", run.name, name, now)

    async def _flow_run(self, api: PrefectApi, run: RunRecord, name: str) -> dict[str, Any] | None:
        """The flow run of the attempt called ``name``; None when there is none (any more)."""
        known = self._ids.get(name)
        if known is not None:
            found = await self._call(api, "GET", f"/flow_runs/{known}", accept=(404,))
            return found.json() if found.status_code != 404 else None
        # Another worker created it (a takeover): its idempotency key finds it; Prefect
        # keeps keys unique per flow.
        flow, _ = _names(run)
        query = {
            "flows": {"name": {"any_": [flow]}},
            "flow_runs": {"idempotency_key": {"any_": [name]}},
            "limit": 1,
        }
        matches = (await self._call(api, "POST", "/flow_runs/filter", json=query)).json()
        if not matches:
            return None
        self._ids[name] = matches[0]["id"]
        flow_run: dict[str, Any] = matches[0]
        return flow_run

    async def _call(self, api: PrefectApi, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await api_call(
            self._client, method, api.base + path, what=_WHAT, headers=api.headers, **kwargs
        )


class PrefectApi:
    """Where and how to call Prefect for a run's target."""

    def __init__(self, base: str, headers: dict[str, str], ui: str, options: PrefectTarget):
        self.base, self.headers, self.ui, self.options = base, headers, ui, options

    @classmethod
    def of(cls, run: RunRecord, default: str | None) -> PrefectApi:
        """Raises Refused: no server to call, or a credential variable that is not set."""
        options = TargetSpec(url=run.target, options=run.target_options or {}).model()
        assert isinstance(options, PrefectTarget)
        # Prefect's own variable, as its CLI and SDK read it, when tripwire's is not set
        default = default or os.environ.get("PREFECT_API_URL")
        base = server_url(
            run, tls=options.tls, default=default, setting="TRIPWIRE_PREFECT_URL", what=_WHAT
        )
        if urlsplit(run.target).netloc:
            base += "/api"
        headers: dict[str, str] = {}
        auth = secret(options.auth_string_env, "the Prefect server's user:password")
        key = secret(options.api_key_env, "the Prefect API key")
        if auth is not None:  # as Prefect's client, which prefers it to a key
            headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        elif key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return cls(base, headers, (options.ui_url or ui_url_of(base)).rstrip("/"), options)

    def link(self, flow_run_id: str) -> str:
        return f"{self.ui}/runs/flow-run/{flow_run_id}"


def phase_of(kind: str | None, name: str | None) -> AttemptPhase:
    """The live attempt phase of a flow run in a state that has not ended."""
    if kind == "SCHEDULED":
        return _SCHEDULED.get(name or "", AttemptPhase.INITIALIZING)
    return _LIVE.get(kind or "", AttemptPhase.INITIALIZING)


def ui_url_of(api: str) -> str:
    """The Prefect UI of an API URL, as Prefect infers it: a Cloud workspace's page
    (``/api/accounts/A/workspaces/W`` -> ``app.prefect.cloud/account/A/workspace/W``), or
    a server's root (``http://host:4200/api`` -> ``http://host:4200``)."""
    ui = api.rstrip("/")
    if ui.startswith(_CLOUD_API):
        ui = _CLOUD_UI + ui[len(_CLOUD_API) :]
    ui = ui.removesuffix("/api").replace("/api/", "/")
    return ui.replace("/accounts/", "/account/").replace("/workspaces/", "/workspace/")


def _names(run: RunRecord) -> tuple[str, str]:
    flow, deployment = (unquote(p) for p in urlsplit(run.target).path.split("/") if p)
    return flow, deployment


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail or response.text[:300])

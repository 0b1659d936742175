"""``airflow://[SERVER]/DAG_ID``: each attempt of a run is a DAG run, triggered through
Airflow 3's REST API (``SERVER/api/v2``; a target with no SERVER uses
``TRIPWIRE_AIRFLOW_URL``).

The DAG run's id is the attempt's name (:func:`~sensors.launchers.remote.attempt_name`)
and its ``conf`` the run's parameters, or the target's ``conf`` template. Airflow
keeps one DAG run per DAG and id, so a replayed create finds the one that exists
(a look-up first, and a 409 to a POST that lost a race) and starts none. A DAG
that Airflow does not know, or that is paused (Airflow pauses new DAGs unless
told otherwise; a run of it would stay queued), refuses the attempt at once,
before any DAG run is made, saying what to do. The DAG run's state decides the
attempt's phase: queued -> INITIALIZING, running -> RUNNING, success ->
SUCCEEDED, failed -> FAILED (USER), naming the tasks that failed.

Abort marks the DAG run failed, as "Mark as failed" in Airflow's UI does (its
running tasks are stopped), with a note saying why; tripwire's run ends ABORTED.

Credentials stay on the worker: ``username_env`` and ``password_env`` name the
variables of a user that gets a token from ``POST /auth/token`` (asked again when
it expires or the server refuses it), ``token_env`` that of a ready token.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from sensors.launchers.base import template_values
from sensors.launchers.remote import Observation, Refused, RemoteLauncher
from sensors.launchers.remote_http import api_call, secret, server_url
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from triggers.targets import AirflowTarget, TargetSpec, render

__all__ = ["ABORT_NOTE", "AirflowApi", "AirflowLauncher", "token_expiry"]

log = logging.getLogger(__name__)

ABORT_NOTE = "stopped by tripwire"
"""How the note of a DAG run that tripwire marked failed begins."""

_WHAT = "Airflow"
_TIMEOUT = 30.0  # seconds for one API call
_EARLY = 60.0  # seconds before a token expires that a new one is asked for
_NOTE_MAX = 1000  # characters Airflow keeps in a note
_REFUSED_TOKEN = (401, 403)
_PHASES = {
    "queued": AttemptPhase.INITIALIZING,
    "running": AttemptPhase.RUNNING,
    "success": AttemptPhase.SUCCEEDED,
}


class AirflowLauncher(RemoteLauncher):
    """Triggers a DAG run per attempt and follows its state."""

    family = "airflow"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False)
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (server, user) -> token
        self._warned: set[str] = set()  # attempts whose paused DAG the log told about

    async def disconnect(self) -> None:
        await self._client.aclose()

    async def create(self, run: RunRecord, name: str) -> str | None:
        api = AirflowApi.of(run, self._settings.airflow_url)
        found = await self._call(api, "GET", api.run_path(name), accept=(404,))
        if found.status_code != 404:
            log.info("run %s: DAG run %s of %s existed already", run.name, name, run.target)
            return api.link(name)
        await self._runnable(api, run)
        values = template_values(run)
        conf = (
            dict(run.parameters)
            if api.options.conf is None
            else render(api.options.conf, values, typed=True)
        )
        body = {
            "dag_run_id": name,
            "logical_date": None,  # a manual run: only the id names it
            "conf": conf,
            "note": f"started by tripwire: run {run.name} ({run.project}/{run.domain})",
        }
        created = await self._call(
            api, "POST", f"/dags/{api.dag}/dagRuns", json=body, accept=(409,)
        )
        if created.status_code == 409:  # made since the look-up: a replay that raced this one
            log.info("run %s: DAG run %s of %s existed already", run.name, name, run.target)
        return api.link(name)

    async def _runnable(self, api: AirflowApi, run: RunRecord) -> None:
        """Refuse a DAG that Airflow does not know or that is paused."""
        dag = await self._call(api, "GET", f"/dags/{api.dag}", accept=(404,))
        if dag.status_code == 404:
            raise Refused(
                "DagNotFound",
                f"{_WHAT} at {api.root} has no DAG {api.dag_id!r}: `airflow dags list` shows "
                "the DAGs it parsed (a new file shows once the dag-processor read it), and "
                "`airflow dags list-import-errors` the files that failed",
            )
        if dag.json().get("is_paused"):
            raise Refused(
                "DagPaused",
                f"DAG {api.dag_id!r} is paused in {_WHAT} at {api.root}, so its run would stay "
                f"queued: unpause it (`airflow dags unpause {api.dag_id}`, or its toggle in the "
                f"UI), then `tripwire runs recover {run.name}`. Airflow pauses new DAGs unless "
                "[core] dags_are_paused_at_creation is False or the DAG says "
                "is_paused_upon_creation=False",
            )

    async def observe(self, run: RunRecord, name: str) -> Observation:
        api = AirflowApi.of(run, self._settings.airflow_url)
        link = api.link(name)
        found = await self._call(api, "GET", api.run_path(name), accept=(404,))
        if found.status_code == 404:
            message = f"DAG run {api.dag_id}/{name} is gone: it was deleted outside tripwire"
            return self.failed("DagRunMissing", message)
        dag_run = found.json()
        state = dag_run.get("state")
        if state == "failed":
            self._warned.discard(name)
            if (dag_run.get("note") or "").startswith(ABORT_NOTE):
                return Observation(AttemptPhase.ABORTED, link=link)
            return await self._failure(api, dag_run, link)
        if state == "queued":
            await self._warn_if_paused(api, run, name)
        phase = _PHASES.get(state or "", AttemptPhase.INITIALIZING)
        if phase == AttemptPhase.SUCCEEDED:
            self._warned.discard(name)
        return Observation(phase, link=link)

    async def _failure(self, api: AirflowApi, dag_run: dict[str, Any], link: str) -> Observation:
        """A failed DAG run, as a USER failure that names its failed tasks."""
        name = dag_run["dag_run_id"]
        tasks = await self._call(
            api, "GET", f"{api.run_path(name)}/taskInstances", params={"state": "failed"}
        )
        failed = sorted({ti["task_id"] for ti in tasks.json().get("task_instances", [])})
        where = f"{_WHAT} DAG run {api.dag_id}/{name} failed"
        if failed:
            which = f"task {failed[0]}" if len(failed) == 1 else f"tasks {', '.join(failed)}"
            message = f"{where}: {which} failed; see {link}/tasks/{failed[0]}"
        else:
            note = dag_run.get("note")
            message = f"{where} with no failed task (marked failed in Airflow?); see {link}"
            message += f"; its note: {note}" if note else ""
        return self.failed("DagRunFailed", message, ErrorKind.USER)

    async def _warn_if_paused(self, api: AirflowApi, run: RunRecord, name: str) -> None:
        """Say in the log, once, why a queued DAG run is not starting: its DAG was paused."""
        if name in self._warned:
            return
        dag = await self._call(api, "GET", f"/dags/{api.dag}", accept=(404,))
        if dag.status_code != 404 and dag.json().get("is_paused"):
            self._warned.add(name)
            log.warning(
                "run %s: DAG %s is paused in Airflow, so its DAG run %s stays queued until it "
                "is unpaused: `airflow dags unpause %s`",
                run.name,
                api.dag_id,
                name,
                api.dag_id,
            )

    async def stop(self, run: RunRecord, name: str) -> None:
        api = AirflowApi.of(run, self._settings.airflow_url)
        found = await self._call(api, "GET", api.run_path(name), accept=(404,))
        if found.status_code == 404 or found.json().get("state") in ("success", "failed"):
            return
        record = await self._store.get_run(run.name, project=run.project, domain=run.domain)
        if record.phase == WorkflowPhase.ABORTING:
            why = f"{ABORT_NOTE}: run {run.name} was aborted"
            why += f" ({record.abort_cause})" if record.abort_cause else ""
        else:
            why = f"{ABORT_NOTE}: run {run.name} took longer than its timeout"
        body = {"state": "failed", "note": why[:_NOTE_MAX]}
        await self._call(api, "PATCH", api.run_path(name), json=body, accept=(404,))
        self._warned.discard(name)
        log.info("run %s: marked DAG run %s failed in Airflow: %s", run.name, name, why)

    async def _call(
        self, api: AirflowApi, method: str, path: str, *, accept: tuple[int, ...] = (), **kw: Any
    ) -> httpx.Response:
        """Call Airflow's API with a token, asking for a new one once if it is refused:
        401 "Token Expired" (clocks differ), 403 "Invalid JWT token" (the server's
        [api_auth] jwt_secret changed; a 403 for want of rights comes back again)."""
        again = api.login is not None
        response = await api_call(
            self._client,
            method,
            api.base + path,
            what=_WHAT,
            headers=await self._auth(api, fresh=False),
            accept=(*accept, *_REFUSED_TOKEN) if again else accept,
            **kw,
        )
        if response.status_code in _REFUSED_TOKEN and again:
            response = await api_call(
                self._client,
                method,
                api.base + path,
                what=_WHAT,
                headers=await self._auth(api, fresh=True),
                accept=accept,
                **kw,
            )
        return response

    async def _auth(self, api: AirflowApi, *, fresh: bool) -> dict[str, str]:
        """The Authorization header of ``api``'s calls: its ready token, or one its user got
        (kept until a minute before it expires); none when the target names no credentials."""
        if api.token is not None:
            return {"Authorization": f"Bearer {api.token}"}
        if api.login is None:
            return {}
        user, password = api.login
        key = (api.root, user)
        held = self._tokens.get(key)
        if fresh or held is None or held[1] - _EARLY <= time.time():
            try:
                answer = await api_call(
                    self._client,
                    "POST",
                    f"{api.root}/auth/token",
                    what=_WHAT,
                    json={"username": user, "password": password},
                )
            except Refused as exc:
                raise Refused(
                    exc.code,
                    f"{_WHAT} at {api.root} refused the user in ${api.options.username_env} and "
                    f"the password in ${api.options.password_env}: {exc.message}",
                ) from None
            token = answer.json()["access_token"]
            held = self._tokens[key] = (token, token_expiry(token))
        return {"Authorization": f"Bearer {held[0]}"}


@dataclass(frozen=True)
class AirflowApi:
    """Where and how to call Airflow for a run's target."""

    root: str
    """The server, ``http(s)://HOST[:PORT][/PATH]``: its UI; the API and /auth are under it."""
    dag_id: str
    options: AirflowTarget
    login: tuple[str, str] | None
    token: str | None

    @classmethod
    def of(cls, run: RunRecord, default: str | None) -> AirflowApi:
        """Raises Refused: no server to call, half a user, or a variable that is not set."""
        options = TargetSpec(url=run.target, options=run.target_options or {}).model()
        assert isinstance(options, AirflowTarget)
        root = server_url(
            run, tls=options.tls, default=default, setting="TRIPWIRE_AIRFLOW_URL", what=_WHAT
        )
        if (options.username_env is None) != (options.password_env is None):
            raise Refused(
                "TargetMisconfigured",
                f"the target {run.target} names only one of username_env and password_env; "
                "name both, or token_env",
            )
        user = secret(options.username_env, "the Airflow user")
        password = secret(options.password_env, "the Airflow user's password")
        token = secret(options.token_env, "the Airflow API token")
        login = (user, password) if user is not None and password is not None else None
        dag_id = unquote(urlsplit(run.target).path.strip("/"))
        return cls(root.rstrip("/"), dag_id, options, login, token)

    @property
    def base(self) -> str:
        return f"{self.root}/api/v2"

    @property
    def dag(self) -> str:
        """The DAG id as a path segment."""
        return quote(self.dag_id, safe="")

    def run_path(self, name: str) -> str:
        return f"/dags/{self.dag}/dagRuns/{quote(name, safe='')}"

    def link(self, name: str) -> str:
        """The DAG run's page in Airflow's UI."""
        return f"{self.root}/dags/{self.dag}/runs/{quote(name, safe='')}"


def token_expiry(token: str) -> float:
    """When a JWT expires (its ``exp``, in seconds since the epoch), read without checking
    its signature (that is the server's business); infinity when it does not say."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return float("inf")

"""``dagster://[SERVER]/[LOCATION/]JOB``: each attempt of a run is a run of a Dagster job,
launched through the GraphQL API of Dagster's webserver (``launchRun``).

The run config is the target's ``run_config`` template filled with the run's
values (None: an empty run config). The Dagster run carries the tags
``tripwire/run`` (the attempt's name), ``tripwire/project`` and
``tripwire/domain``: a replayed create finds the run by them (``runsOrError``)
and launches none. Dagster takes no run id from a client, so two creates that
pass the look-up together (a worker taken over while its launch was under way)
launch two runs: every look keeps the oldest and terminates the others, so
both workers settle on the same one. Without LOCATION, the code location whose
repository (option ``repository``, default ``__repository__``, that of a
``Definitions``) has the job is looked up.

Dagster's run status decides the attempt's phase: QUEUED, NOT_STARTED, STARTING
-> INITIALIZING; STARTED, CANCELING, SUSPENDED, MANAGED -> RUNNING; SUCCESS ->
SUCCEEDED; CANCELED -> ABORTED; FAILURE -> FAILED, USER when a step (or a
resource) failed, SYSTEM when the run worker was interrupted or restarted, or
the run could not be started, as Dagster's ``dagster/failure_reason`` tag says.
Abort terminates the run (``terminateRun``). Answers that name a mistake (an
unknown job, a run config the job rejects) refuse the attempt at once, saying
what to fix.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from sensors.launchers.attempts import run_error
from sensors.launchers.dagster_api import (
    FIND_RUNS,
    LAUNCH_RUN,
    RUN_EVENTS,
    TERMINATE_RUN,
    WORKSPACE_JOBS,
    DagsterServer,
    attempt_runs,
    attempt_tags,
    execution_params,
    failure_of,
    graphql_answer,
    location_of,
    phase_of,
    refusal,
    terminate_policy,
    termination_error,
    why_failed,
)
from sensors.launchers.remote import Observation, Refused, RemoteLauncher, Unreachable
from sensors.launchers.remote_http import api_call
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase
from sensors.runs.store import RunStore
from triggers.settings import Settings
from triggers.targets import DagsterTarget, TargetSpec

__all__ = ["DagsterLauncher"]


class DagsterLauncher(RemoteLauncher):
    """Launches a Dagster job run per attempt and follows its status."""

    family = "dagster"

    def __init__(self, *, settings: Settings, store: RunStore) -> None:
        super().__init__(settings=settings, store=store)
        self._client = httpx.AsyncClient(timeout=30, follow_redirects=False)

    async def disconnect(self) -> None:
        await self._client.aclose()

    async def create(self, run: RunRecord, name: str) -> str:
        options = _options(run)
        server = self._server(run, options)
        found = await self._runs(server, run, name)  # a replay finds the run it launched
        if not found:
            launched = await self._launch(server, run, name, options)
            found = await self._runs(server, run, name) or [{"runId": launched}]
        kept, *duplicates = found
        await self._terminate(server, duplicates)
        return server.link(kept["runId"])

    async def observe(self, run: RunRecord, name: str) -> Observation:
        server = self._server(run, _options(run))
        found = await self._runs(server, run, name)
        if not found:
            message = f"the Dagster run of {name} is gone: it was deleted outside tripwire"
            return self.failed("RunMissing", message)
        kept, *duplicates = found
        await self._terminate(server, duplicates)
        link = server.link(kept["runId"])
        phase = phase_of(kept["status"])
        if phase != AttemptPhase.FAILED:
            return Observation(phase, link=link)
        code, kind, message = failure_of(kept, link)
        why = await self._why(server, kept["runId"])
        message = f"{message}: {why}" if why else message
        return Observation(phase, run_error(code, kind, message, self.worker), link=link)

    async def stop(self, run: RunRecord, name: str) -> None:
        server = self._server(run, _options(run))
        await self._terminate(server, await self._runs(server, run, name))

    # the GraphQL API

    def _server(self, run: RunRecord, options: DagsterTarget) -> DagsterServer:
        return DagsterServer.of(run, options, self._settings.dagster_url)

    async def _graphql(
        self, server: DagsterServer, query: str, variables: dict[str, Any], field: str
    ) -> dict[str, Any]:
        """The answer of one GraphQL operation: the ``field`` of its data.

        Raises:
            Refused, Unreachable: as :func:`graphql_answer` says; Unreachable also when
                there is no answer, or an HTTP error other than Dagster's 400 and 500.
        """
        response = await api_call(
            self._client,
            "POST",
            f"{server.url}/graphql",
            what="Dagster",
            accept=(400, 500),  # Dagster's answers to these say what went wrong: read them
            json={"query": query, "variables": variables},
            headers=server.headers,
        )
        try:
            body = response.json()
        except ValueError:
            body = None  # graphql_answer says there was no JSON
        return graphql_answer(server.url, field, response.status_code, body)

    async def _runs(self, server: DagsterServer, run: RunRecord, name: str) -> list[dict[str, Any]]:
        """The Dagster runs of the attempt called ``name`` (see :func:`attempt_runs`)."""
        tags = [{"key": k, "value": v} for k, v in attempt_tags(run, name).items()]
        answer = await self._graphql(server, FIND_RUNS, {"tags": tags}, "runsOrError")
        return attempt_runs(answer, name)

    async def _launch(
        self, server: DagsterServer, run: RunRecord, name: str, options: DagsterTarget
    ) -> str:
        """Launch the attempt's run; its run id."""
        location, job = _where(run)
        if location is None:
            answer = await self._graphql(server, WORKSPACE_JOBS, {}, "workspaceOrError")
            location = location_of(answer, job, options.repository, server.url)
        params = execution_params(run, name, options, location, job)
        answer = await self._graphql(server, LAUNCH_RUN, {"params": params}, "launchRun")
        if answer["__typename"] != "LaunchRunSuccess":
            raise refusal(answer, f"job {job} of {options.repository}@{location}")
        run_id: str = answer["run"]["runId"]
        return run_id

    async def _terminate(self, server: DagsterServer, runs: list[dict[str, Any]]) -> None:
        """Terminate those of ``runs`` that have not ended; one that ended meanwhile is fine.

        Raises:
            Unreachable: Dagster could not terminate one now (the next look tries again).
        """
        for found in runs:
            policy = terminate_policy(found["status"])
            if policy is None:
                continue
            variables = {"runId": found["runId"], "policy": policy}
            answer = await self._graphql(server, TERMINATE_RUN, variables, "terminateRun")
            error = termination_error(answer, found["runId"])
            if error is not None:
                raise error

    async def _why(self, server: DagsterServer, run_id: str) -> str:
        """Why a run failed (see :func:`why_failed`), or why its events could not be read."""
        try:
            answer = await self._graphql(server, RUN_EVENTS, {"runId": run_id}, "logsForRun")
        except (Refused, Unreachable) as exc:
            return f"(its events could not be read: {exc})"
        return why_failed(answer)


def _options(run: RunRecord) -> DagsterTarget:
    options = TargetSpec(url=run.target, options=run.target_options or {}).model()
    assert isinstance(options, DagsterTarget)
    return options


def _where(run: RunRecord) -> tuple[str | None, str]:
    """The code location (None: look it up) and the job that a target URL names."""
    names = [unquote(p) for p in urlsplit(run.target).path.split("/") if p]
    return (None, names[0]) if len(names) == 1 else (names[0], names[1])

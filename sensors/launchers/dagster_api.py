"""Dagster's GraphQL API as the ``dagster://`` launcher speaks it, as data: the
operations it sends (``runsOrError``, ``workspaceOrError``, ``launchRun``,
``logsForRun``, ``terminateRun``), the requests it builds, and what Dagster's
answers mean (an attempt's phase, why a run failed, which runs to keep, what to
terminate, and refusals that say what to fix). Nothing here sends a request:
:mod:`sensors.launchers.dagster` does, and asks these functions what the answers
mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sensors.launchers.base import template_values
from sensors.launchers.remote import Refused, Unreachable
from sensors.launchers.remote_http import secret, server_url
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind
from triggers.targets import DagsterTarget, render

__all__ = [
    "FIND_RUNS",
    "LAUNCH_RUN",
    "RUN_EVENTS",
    "RUN_TAG",
    "TERMINATE_RUN",
    "WORKSPACE_JOBS",
    "DagsterServer",
    "attempt_runs",
    "attempt_tags",
    "execution_params",
    "failure_of",
    "graphql_answer",
    "location_of",
    "phase_of",
    "refusal",
    "terminate_policy",
    "termination_error",
    "why_failed",
]

RUN_TAG = "tripwire/run"

_PHASES = {
    "QUEUED": AttemptPhase.INITIALIZING,
    "NOT_STARTED": AttemptPhase.INITIALIZING,
    "STARTING": AttemptPhase.INITIALIZING,
    "STARTED": AttemptPhase.RUNNING,
    "CANCELING": AttemptPhase.RUNNING,
    "SUSPENDED": AttemptPhase.RUNNING,
    "MANAGED": AttemptPhase.RUNNING,
    "SUCCESS": AttemptPhase.SUCCEEDED,
    "CANCELED": AttemptPhase.ABORTED,
    "FAILURE": AttemptPhase.FAILED,
}
_ENDED = ("SUCCESS", "FAILURE", "CANCELED", "CANCELING")  # nothing left to terminate
# Dagster's dagster/failure_reason tag -> the error's code and kind
_FAILURES = {
    "STEP_FAILURE": ("StepFailed", ErrorKind.USER),
    "JOB_INITIALIZATION_FAILURE": ("JobInitFailed", ErrorKind.USER),
    "RUN_EXCEPTION": ("RunFailed", ErrorKind.SYSTEM),
    "START_TIMEOUT": ("RunStartTimeout", ErrorKind.SYSTEM),
    "RUN_WORKER_RESTART": ("RunWorkerRestarted", ErrorKind.SYSTEM),
    "UNEXPECTED_TERMINATION": ("RunInterrupted", ErrorKind.SYSTEM),
}
# Dagster's errors that say it cannot answer now (a code server restarting, a redeploy, a
# busy database), not that the request is wrong
_TRANSIENT = (
    "DagsterUserCodeUnreachableError",
    "DagsterUserCodeUnreachableTimeoutError",
    "DagsterCodeLocationLoadError",
    "OperationalError",
)

FIND_RUNS = """
query TripwireFind($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    __typename
    ... on Runs {
      results { runId status creationTime parentRunId tags { key value } stepStats {
        stepKey status } }
    }
    ... on PythonError { message className }
    ... on Error { message }
  }
}"""
WORKSPACE_JOBS = """
query TripwireJobs {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name jobs { name } } }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message className }
  }
}"""
LAUNCH_RUN = """
mutation TripwireLaunch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidStepError { invalidStepKey }
    ... on PythonError { message className }
    ... on Error { message }
  }
}"""
RUN_EVENTS = """
query TripwireFailure($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
        ... on EngineEvent { message error { message } }
        ... on RunFailureEvent { message }
      }
    }
  }
}"""
TERMINATE_RUN = """
mutation TripwireTerminate($runId: String!, $policy: TerminateRunPolicy) {
  terminateRun(runId: $runId, terminatePolicy: $policy) {
    __typename
    ... on TerminateRunFailure { message run { status } }
    ... on PythonError { message className }
    ... on Error { message }
  }
}"""


@dataclass(frozen=True)
class DagsterServer:
    """Where a target's Dagster is, and how to talk to it."""

    url: str  # the webserver's base URL: /graphql is its API, /runs/ID a run's page
    headers: dict[str, str]

    @classmethod
    def of(cls, run: RunRecord, options: DagsterTarget, default: str | None) -> DagsterServer:
        """The Dagster that ``run``'s target names, else ``default`` (TRIPWIRE_DAGSTER_URL).

        Raises:
            Refused: the target names no server and there is no ``default``, or its token's
                variable is not set.
        """
        url = server_url(
            run,
            tls=options.tls,
            default=default,
            setting="TRIPWIRE_DAGSTER_URL",
            what="Dagster",
        )
        token = secret(options.token_env, "the Dagster+ user token")
        return cls(url, {"Dagster-Cloud-Api-Token": token} if token else {})

    def link(self, run_id: str) -> str:
        """The page of a Dagster run."""
        return f"{self.url}/runs/{quote(run_id)}"


def graphql_answer(server: str, field: str, status: int, body: Any) -> dict[str, Any]:
    """The ``field`` of the data of Dagster's answer to a GraphQL operation: ``status``, the
    HTTP status, and ``body``, the JSON it sent (None: none).

    Raises:
        Refused: the server rejects the operation (400: a query or a schema this server's
            Dagster does not know).
        Unreachable: no JSON, a 500 (Dagster failed while resolving it), or a code location
            that cannot answer now.
    """
    url = f"{server}/graphql"
    try:
        errors = body.get("errors") or []
        answer = (body.get("data") or {}).get(field)
    except AttributeError:
        raise Unreachable(f"{url} answered {status} with no JSON") from None
    messages = "; ".join(str(e.get("message", e)) for e in errors)
    if status == 500 or (not isinstance(answer, dict) and not errors):
        raise Unreachable(f"{url} failed {field} ({status}): {messages}")
    if errors or not isinstance(answer, dict):
        raise Refused(
            "DagsterApiError",
            f"{url} rejected {field}: {messages}. tripwire speaks the GraphQL API of "
            "dagster 1.10 and later: check the server's version",
        )
    if answer.get("__typename") == "PythonError" and answer.get("className") in _TRANSIENT:
        raise Unreachable(f"Dagster at {server}: {answer.get('message', '').strip()}")
    return answer


def attempt_runs(answer: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The Dagster runs of the attempt called ``name`` in ``answer`` (``runsOrError``, the
    runs with its tags), oldest first: the one to keep, then duplicates. A re-execution
    started in Dagster's UI copies the tags; it has a parent run, and is not one of them.

    Raises:
        Refused: ``answer`` is an error.
    """
    if answer["__typename"] != "Runs":
        raise refusal(answer, f"the runs of {name}")
    found = [r for r in answer["results"] if not r.get("parentRunId")]
    return sorted(found, key=lambda r: (r["creationTime"], r["runId"]))


def phase_of(status: str) -> AttemptPhase:
    """The attempt phase of a Dagster run in ``status``; one this module does not know (a
    newer Dagster's) is RUNNING."""
    return _PHASES.get(status, AttemptPhase.RUNNING)


def failure_of(found: dict[str, Any], link: str) -> tuple[str, ErrorKind, str]:
    """The error code, kind and message of a FAILURE run at ``link``: as Dagster's
    ``dagster/failure_reason`` tag says; without it, USER when a step failed, else SYSTEM."""
    reason = {t["key"]: t["value"] for t in found["tags"]}.get("dagster/failure_reason", "")
    steps = [s["stepKey"] for s in found["stepStats"] if s["status"] == "FAILURE"]
    code, kind = _FAILURES.get(reason) or (
        ("StepFailed", ErrorKind.USER) if steps else ("RunFailed", ErrorKind.SYSTEM)
    )
    return code, kind, f"Dagster run {link} failed ({reason or 'no reason given'})"


def why_failed(answer: dict[str, Any]) -> str:
    """Why a run failed, from its events (``logsForRun``): the errors of its failed steps,
    else what Dagster reported."""
    if answer["__typename"] != "EventConnection":
        return ""
    steps, other = [], []
    for event in answer["events"]:
        error = event.get("error") or {}
        text = ((error.get("cause") or {}).get("message") or error.get("message") or "").strip()
        if event["__typename"] == "ExecutionStepFailureEvent":
            steps.append(f"op {event['stepKey']}: {text}")
        elif event["__typename"] == "EngineEvent" and text:
            other.append(f"{event.get('message', '')} {text}")
        elif event["__typename"] == "RunFailureEvent":
            other.append(event.get("message", ""))
    return "; ".join(steps or other)[:2000]


def terminate_policy(status: str) -> str | None:
    """How to terminate a run in ``status`` (``terminateRun``'s policy); None: it has ended,
    there is nothing to terminate."""
    if status in _ENDED:
        return None
    # A run being started cannot be terminated safely: it is marked CANCELED, and its run
    # worker, once up, does not execute it.
    starting = status in ("NOT_STARTED", "STARTING")
    return "MARK_AS_CANCELED_IMMEDIATELY" if starting else "SAFE_TERMINATE"


def termination_error(answer: dict[str, Any], run_id: str) -> Refused | Unreachable | None:
    """What to raise for Dagster's ``answer`` to terminating ``run_id``; None when the run is
    stopped, gone, or ended meanwhile."""
    kind = answer["__typename"]
    if kind in ("TerminateRunSuccess", "RunNotFoundError"):
        return None
    if kind == "TerminateRunFailure":
        if answer["run"]["status"] in _ENDED:
            return None
        return Unreachable(f"Dagster could not terminate {run_id} yet: {answer.get('message', '')}")
    return refusal(answer, f"run {run_id}")


def location_of(answer: dict[str, Any], job: str, repository: str, server: str) -> str:
    """The code location whose repository ``repository`` has ``job``, in ``answer``
    (``workspaceOrError``) of the Dagster at ``server``.

    Raises:
        Refused: no code location has it, or several do.
    """
    if answer["__typename"] != "Workspace":
        raise refusal(answer, "the workspace")
    having: list[tuple[str, str]] = []  # (location, repository)
    elsewhere: list[tuple[str, str]] = []
    broken: list[str] = []
    for entry in answer["locationEntries"]:
        loaded = entry.get("locationOrLoadError") or {}
        if loaded.get("__typename") == "PythonError":
            broken.append(f"{entry['name']} ({loaded.get('message', '').strip()[:300]})")
        for repo in loaded.get("repositories") or []:
            if job in {j["name"] for j in repo["jobs"]}:
                place = (entry["name"], repo["name"])
                (having if repo["name"] == repository else elsewhere).append(place)
    if len(having) == 1:
        return having[0][0]
    if having:
        names = ", ".join(location for location, _ in having)
        raise Refused(
            "JobAmbiguous",
            f"code locations {names} of {server} all have job {job}: name one, "
            f"dagster://SERVER/LOCATION/{job}",
        )
    if elsewhere:
        places = ", ".join(f"repository {r} of location {loc}" for loc, r in elsewhere)
        hint = f"; it is in {places}: set the target's repository"
    elif broken:
        hint = f"; these code locations failed to load: {'; '.join(broken)}"
    else:
        hint = ": check the job's name, and that its code location is in the workspace"
    raise Refused(
        "JobNotFound", f"no code location of {server} has job {job} in {repository}{hint}"
    )


def execution_params(
    run: RunRecord, name: str, options: DagsterTarget, location: str, job: str
) -> dict[str, Any]:
    """``launchRun``'s parameters for the attempt called ``name``: the job, the run config
    filled with the run's values, and the target's tags with tripwire's."""
    values = template_values(run)
    run_config = render(options.run_config, values, typed=True) if options.run_config else {}
    tags = {**render(options.tags, values, typed=False), **attempt_tags(run, name)}
    return {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": options.repository,
            "jobName": job,
        },
        "runConfigData": run_config,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }


def attempt_tags(run: RunRecord, name: str) -> dict[str, str]:
    """The tags that mark a Dagster run as the attempt called ``name`` of ``run``."""
    return {RUN_TAG: name, "tripwire/project": run.project, "tripwire/domain": run.domain}


def refusal(answer: dict[str, Any], where: str) -> Refused:
    """A GraphQL error result as a refusal that says what to fix."""
    kind = answer.get("__typename", "")
    message = str(answer.get("message") or "").strip()
    if kind == "RunConfigValidationInvalid":
        errors = "; ".join(e["message"] for e in answer.get("errors") or [])
        return Refused(
            "RunConfigInvalid",
            f"{where} rejects the run config: {errors} Fix the target's run_config template "
            "(it fills the job's config schema with the flow's parameters)",
        )
    if kind == "InvalidStepError":
        message = f"no step {answer.get('invalidStepKey')}"
    fixes = {
        "PipelineNotFoundError": "check the job's name, the code location in "
        "dagster://SERVER/LOCATION/JOB, and the target's repository (default "
        "__repository__, that of a Definitions object)",
        "InvalidSubsetError": "the job's selection does not match its ops or assets",
        "UnauthorizedError": "the token in the target's token_env may not do this",
        "PythonError": "Dagster raised it: see the webserver's log",
    }
    fix = fixes.get(kind, "see Dagster's answer")
    code = "JobNotFound" if kind == "PipelineNotFoundError" else f"Dagster{kind}"
    return Refused(code, f"{where}: {kind}: {message or 'no message'}; {fix}")

"""What Dagster's answers mean to a dagster:// attempt, as data shaped as its GraphQL API
answers (tests/integration/test_dagster.py asks a real Dagster): every run status, the
failure reasons, which runs are kept and how the others are terminated, which errors are
asked again and which refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sensors.launchers.dagster_api import (
    RUN_TAG,
    DagsterServer,
    attempt_runs,
    execution_params,
    failure_of,
    graphql_answer,
    location_of,
    phase_of,
    terminate_policy,
    termination_error,
    why_failed,
)
from sensors.launchers.remote import Refused, Unreachable
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from tests.fixtures.runs import new_run
from triggers.targets import DagsterTarget

SERVER = "http://dagster.test:3000"


def a_run(target: str = "dagster://dagster.test:3000/etl/load_day") -> RunRecord:
    now = datetime.now(UTC)
    request = new_run("load-day-1").model_dump()
    return RunRecord(
        **{**request, "target": target, "target_options": {"tls": False}},
        phase=WorkflowPhase.RUNNING,
        created_at=now,
        updated_at=now,
    )


def dagster_run(status: str, run_id: str = "r1", **fields: Any) -> dict[str, Any]:
    return {
        "runId": run_id,
        "status": status,
        "creationTime": 1.0,
        "parentRunId": None,
        "tags": [],
        "stepStats": [],
        **fields,
    }


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("QUEUED", AttemptPhase.INITIALIZING),
        ("NOT_STARTED", AttemptPhase.INITIALIZING),
        ("STARTING", AttemptPhase.INITIALIZING),
        ("STARTED", AttemptPhase.RUNNING),
        ("CANCELING", AttemptPhase.RUNNING),
        ("SUSPENDED", AttemptPhase.RUNNING),
        ("MANAGED", AttemptPhase.RUNNING),
        ("SUCCESS", AttemptPhase.SUCCEEDED),
        ("CANCELED", AttemptPhase.ABORTED),
        ("FAILURE", AttemptPhase.FAILED),
        ("A_NEWER_DAGSTERS_STATUS", AttemptPhase.RUNNING),
    ],
)
def test_each_run_status_is_an_attempt_phase(status: str, phase: AttemptPhase) -> None:
    assert phase_of(status) == phase


def test_a_target_names_its_server_or_takes_the_workers_setting_or_says_to_set_it() -> None:
    plain = DagsterTarget(tls=False)
    assert DagsterServer.of(a_run(), plain, None).link("r 1") == f"{SERVER}/runs/r%201"
    elsewhere = DagsterServer.of(a_run("dagster:///load_day"), plain, "http://dagster:3000/")
    assert elsewhere.url == "http://dagster:3000"
    with pytest.raises(Refused) as refused:
        DagsterServer.of(a_run("dagster:///load_day"), plain, None)
    assert "TRIPWIRE_DAGSTER_URL" in refused.value.message


@pytest.mark.parametrize(
    ("reason", "steps", "code", "kind"),
    [
        ("STEP_FAILURE", ["load"], "StepFailed", ErrorKind.USER),
        ("JOB_INITIALIZATION_FAILURE", [], "JobInitFailed", ErrorKind.USER),
        ("UNEXPECTED_TERMINATION", ["load"], "RunInterrupted", ErrorKind.SYSTEM),
        ("RUN_WORKER_RESTART", [], "RunWorkerRestarted", ErrorKind.SYSTEM),
        ("START_TIMEOUT", [], "RunStartTimeout", ErrorKind.SYSTEM),
        ("RUN_EXCEPTION", [], "RunFailed", ErrorKind.SYSTEM),
        (None, ["load"], "StepFailed", ErrorKind.USER),  # a Dagster without the tag
        (None, [], "RunFailed", ErrorKind.SYSTEM),  # e.g. the daemon could not launch it
    ],
)
def test_a_failed_run_is_user_or_system_as_its_failure_reason_says(
    reason: str | None, steps: list[str], code: str, kind: ErrorKind
) -> None:
    tags = [{"key": "dagster/failure_reason", "value": reason}] if reason else []
    failed = dagster_run(
        "FAILURE", tags=tags, stepStats=[{"stepKey": s, "status": "FAILURE"} for s in steps]
    )
    said = failure_of(failed, f"{SERVER}/runs/r1")
    assert said == (
        code,
        kind,
        f"Dagster run {SERVER}/runs/r1 failed ({reason or 'no reason given'})",
    )


def test_why_a_run_failed_is_its_failed_steps_errors_else_what_dagster_reported() -> None:
    step = {
        "__typename": "ExecutionStepFailureEvent",
        "stepKey": "load",
        "error": {"message": "wrapper", "cause": {"message": "ValueError: no data\n"}},
    }
    engine = {
        "__typename": "EngineEvent",
        "message": "Run worker stopped.",
        "error": {"message": "SIGTERM"},
    }
    ended = {"__typename": "RunFailureEvent", "message": "Execution of run failed."}
    events = {"__typename": "EventConnection", "events": [engine, step, ended]}
    assert why_failed(events) == "op load: ValueError: no data"
    events = {"__typename": "EventConnection", "events": [engine, ended]}
    assert why_failed(events) == "Run worker stopped. SIGTERM; Execution of run failed."
    assert why_failed({"__typename": "RunNotFoundError", "message": "gone"}) == ""


def test_the_oldest_of_an_attempts_runs_is_kept_and_a_live_duplicate_terminated() -> None:
    runs = [
        dagster_run("QUEUED", "newer", creationTime=2.0),
        dagster_run("STARTED", "older", creationTime=1.0),
        dagster_run("STARTED", "re-executed", creationTime=0.5, parentRunId="older"),
    ]
    kept, *duplicates = attempt_runs({"__typename": "Runs", "results": runs}, "load-day-1")
    assert kept["runId"] == "older"
    assert [(r["runId"], terminate_policy(r["status"])) for r in duplicates] == [
        ("newer", "SAFE_TERMINATE")
    ]


@pytest.mark.parametrize(
    ("status", "policy"),
    [
        ("QUEUED", "SAFE_TERMINATE"),
        ("STARTED", "SAFE_TERMINATE"),
        ("NOT_STARTED", "MARK_AS_CANCELED_IMMEDIATELY"),
        ("STARTING", "MARK_AS_CANCELED_IMMEDIATELY"),
        ("CANCELING", None),
        ("SUCCESS", None),
        ("FAILURE", None),
        ("CANCELED", None),
    ],
)
def test_a_live_run_is_terminated_as_its_status_allows_and_an_ended_one_left(
    status: str, policy: str | None
) -> None:
    assert terminate_policy(status) == policy


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        ({"__typename": "TerminateRunSuccess"}, None),
        ({"__typename": "RunNotFoundError", "message": "gone"}, None),
        # it ended while it was being terminated: stopped enough
        (
            {"__typename": "TerminateRunFailure", "message": "no", "run": {"status": "SUCCESS"}},
            None,
        ),
        # Dagster could not terminate it now: the next look tries again
        (
            {"__typename": "TerminateRunFailure", "message": "no", "run": {"status": "STARTED"}},
            Unreachable,
        ),
        ({"__typename": "UnauthorizedError", "message": "read-only"}, Refused),
    ],
)
def test_a_run_is_stopped_enough_when_terminated_gone_or_ended_meanwhile(
    answer: dict[str, Any], raised: type[Exception] | None
) -> None:
    error = termination_error(answer, "r1")
    assert (error is None) if raised is None else isinstance(error, raised)


@pytest.mark.parametrize(
    ("status", "body", "raised", "says"),
    [
        # a query this server's Dagster does not know: 400
        (400, {"data": None, "errors": [{"message": "Cannot query"}]}, Refused, "dagster 1.10"),
        # Dagster failed while answering (a variable it rejects, a locked database): 500
        (500, {"data": None, "errors": [{"message": "Variable '$p'"}]}, Unreachable, "'$p'"),
        (500, None, Unreachable, "answered 500 with no JSON"),
        (
            200,
            {
                "data": {
                    "runsOrError": {
                        "__typename": "PythonError",
                        "className": "DagsterUserCodeUnreachableError",
                        "message": "could not reach the code server",
                    }
                }
            },
            Unreachable,
            "could not reach the code server",
        ),
    ],
)
def test_dagsters_errors_are_asked_again_or_refused_as_they_say(
    status: int, body: Any, raised: type[Exception], says: str
) -> None:
    with pytest.raises(raised) as caught:
        graphql_answer(SERVER, "runsOrError", status, body)
    assert says in str(caught.value)


def test_an_error_dagster_raised_while_answering_is_refused_pointing_at_its_log() -> None:
    error = {"__typename": "PythonError", "message": "KeyError: 'x'"}
    answer = graphql_answer(SERVER, "runsOrError", 200, {"data": {"runsOrError": error}})
    with pytest.raises(Refused) as refused:
        attempt_runs(answer, "load-day-1")
    assert "webserver's log" in refused.value.message


def test_a_job_found_in_no_code_location_names_those_that_failed_to_load() -> None:
    workspace = {
        "__typename": "Workspace",
        "locationEntries": [
            {
                "name": "etl",
                "locationOrLoadError": {"__typename": "PythonError", "message": "ImportError\n"},
            },
            {
                "name": "other",
                "locationOrLoadError": {
                    "__typename": "RepositoryLocation",
                    "repositories": [{"name": "__repository__", "jobs": [{"name": "report"}]}],
                },
            },
        ],
    }
    assert location_of(workspace, "report", "__repository__", SERVER) == "other"
    with pytest.raises(Refused) as refused:
        location_of(workspace, "load_day", "__repository__", SERVER)
    assert refused.value.code == "JobNotFound"
    assert "failed to load: etl (ImportError)" in refused.value.message


def test_a_targets_tags_go_with_the_run_but_never_replace_tripwires() -> None:
    options = DagsterTarget(tags={"team": "{project}", RUN_TAG: "mine"})
    params = execution_params(a_run(), "load-day-1-a2", options, "etl", "load_day")
    tags = {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]}
    assert tags == {
        "team": "p",
        RUN_TAG: "load-day-1-a2",
        "tripwire/project": "p",
        "tripwire/domain": "d",
    }
    assert params["runConfigData"] == {}
    assert params["selector"] == {
        "repositoryLocationName": "etl",
        "repositoryName": "__repository__",
        "jobName": "load_day",
    }

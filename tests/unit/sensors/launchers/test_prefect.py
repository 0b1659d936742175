"""prefect:// without a server: what a flow run's state means for the attempt, where the API
and the UI are, and which credentials go with the calls."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sensors.launchers.prefect import PrefectApi, phase_of, ui_url_of
from sensors.launchers.remote import Refused
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase
from tests.fixtures.runs import new_run


def run_of(target: str, **options: Any) -> RunRecord:
    request = new_run().model_copy(update={"target": target, "target_options": options})
    return RunRecord.model_validate(
        {
            **request.model_dump(),
            "phase": "RUNNING",
            "created_at": "2026-11-23T00:00:00Z",
            "updated_at": "2026-11-23T00:00:00Z",
        }
    )


@pytest.mark.parametrize(
    ("kind", "name", "phase"),
    [
        ("SCHEDULED", "Scheduled", AttemptPhase.INITIALIZING),
        ("PENDING", "Pending", AttemptPhase.INITIALIZING),
        # nothing took it on time, or a concurrency limit holds it
        ("SCHEDULED", "Late", AttemptPhase.WAITING_FOR_RESOURCES),
        ("SCHEDULED", "AwaitingConcurrencySlot", AttemptPhase.WAITING_FOR_RESOURCES),
        # Prefect retries the flow within the attempt
        ("SCHEDULED", "AwaitingRetry", AttemptPhase.RUNNING),
        ("RUNNING", "Retrying", AttemptPhase.RUNNING),
        ("RUNNING", "Running", AttemptPhase.RUNNING),
        ("PAUSED", "Suspended", AttemptPhase.RUNNING),
        ("CANCELLING", "Cancelling", AttemptPhase.RUNNING),
    ],
)
def test_a_live_flow_run_state_is_a_live_attempt_phase(
    kind: str, name: str, phase: AttemptPhase
) -> None:
    assert phase_of(kind, name) == phase


@pytest.mark.parametrize(
    ("api", "ui"),
    [
        ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200"),
        ("https://prefect.example/base/api/", "https://prefect.example/base"),
        (
            "https://api.prefect.cloud/api/accounts/a1/workspaces/w2",
            "https://app.prefect.cloud/account/a1/workspace/w2",
        ),
    ],
)
def test_the_ui_is_found_from_the_api_as_prefect_finds_it(api: str, ui: str) -> None:
    assert ui_url_of(api) == ui


def test_a_target_with_a_server_calls_its_api_over_https_unless_it_is_loopback() -> None:
    remote = PrefectApi.of(run_of("prefect://prefect.example:4200/etl/nightly"), None)
    local = PrefectApi.of(run_of("prefect://localhost:4200/etl/nightly"), None)
    assert remote.base == "https://prefect.example:4200/api"
    assert local.base == "http://localhost:4200/api"
    assert remote.link("f-1") == "https://prefect.example:4200/runs/flow-run/f-1"


def test_a_target_without_a_server_calls_the_workers_prefect_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cloud = "https://api.prefect.cloud/api/accounts/a1/workspaces/w2"
    monkeypatch.setenv("PREFECT_API_URL", cloud)
    run = run_of("prefect:///etl/nightly")
    assert PrefectApi.of(run, None).base == cloud
    assert PrefectApi.of(run, "http://prefect:4200/api").base == "http://prefect:4200/api"
    monkeypatch.delenv("PREFECT_API_URL")
    with pytest.raises(Refused, match="TRIPWIRE_PREFECT_URL"):
        PrefectApi.of(run, None)


def test_credentials_come_from_the_variables_the_target_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_KEY", "pnu_123")
    monkeypatch.setenv("PREFECT_AUTH", "admin:s3cret")
    target = "prefect://127.0.0.1:4200/etl/nightly"
    keyed = PrefectApi.of(run_of(target, api_key_env="PREFECT_KEY"), None)
    basic = PrefectApi.of(run_of(target, auth_string_env="PREFECT_AUTH"), None)
    assert keyed.headers == {"Authorization": "Bearer pnu_123"}
    assert basic.headers == {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}
    assert PrefectApi.of(run_of(target), None).headers == {}


def test_a_credential_variable_that_is_not_set_is_refused_naming_it() -> None:
    run = run_of("prefect://127.0.0.1:4200/etl/nightly", api_key_env="TRIPWIRE_TEST_UNSET_KEY")
    with pytest.raises(Refused, match=r"\$TRIPWIRE_TEST_UNSET_KEY") as refused:
        PrefectApi.of(run, None)
    assert refused.value.code == "SecretMissing"

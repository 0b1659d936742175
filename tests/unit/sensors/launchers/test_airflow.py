"""airflow:// without a server: where the API, the UI and the token come from, and which
credentials go with the calls."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sensors.launchers.airflow import AirflowApi, token_expiry
from sensors.launchers.remote import Refused
from sensors.runs.models import RunRecord
from tests.fixtures.runs import new_run


def run_of(target: str, **options: Any) -> RunRecord:
    request = new_run("nightly-1").model_copy(update={"target": target, "target_options": options})
    return RunRecord.model_validate(
        {
            **request.model_dump(),
            "phase": "RUNNING",
            "created_at": "2026-11-23T00:00:00Z",
            "updated_at": "2026-11-23T00:00:00Z",
        }
    )


@pytest.mark.parametrize(
    ("target", "default", "root"),
    [
        # a loopback server is spoken to over http, any other over https
        ("airflow://127.0.0.1:8080/load_day", None, "http://127.0.0.1:8080"),
        ("airflow://airflow.example/load_day", None, "https://airflow.example"),
        # no server in the URL: the worker's TRIPWIRE_AIRFLOW_URL, path and all
        ("airflow:///load_day", "https://corp.example/airflow/", "https://corp.example/airflow"),
    ],
)
def test_the_api_and_the_ui_are_under_the_server_the_target_names(
    target: str, default: str | None, root: str
) -> None:
    api = AirflowApi.of(run_of(target), default)
    assert api.base == f"{root}/api/v2"
    assert api.run_path("nightly-1") == "/dags/load_day/dagRuns/nightly-1"
    assert api.link("nightly-1") == f"{root}/dags/load_day/runs/nightly-1"


def test_a_target_with_no_server_and_no_setting_is_refused_naming_the_setting() -> None:
    with pytest.raises(Refused) as refused:
        AirflowApi.of(run_of("airflow:///load_day"), None)
    assert refused.value.code == "ServerMissing"
    assert "TRIPWIRE_AIRFLOW_URL" in refused.value.message


def test_credentials_come_from_the_variables_the_target_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AF_USER", "ann")
    monkeypatch.setenv("AF_PASSWORD", "s3cret")
    monkeypatch.setenv("AF_TOKEN", "t0ken")
    target = "airflow://localhost:8080/load_day"
    login = AirflowApi.of(run_of(target, username_env="AF_USER", password_env="AF_PASSWORD"), None)
    assert (login.login, login.token) == (("ann", "s3cret"), None)
    ready = AirflowApi.of(run_of(target, token_env="AF_TOKEN"), None)
    assert (ready.login, ready.token) == (None, "t0ken")
    anonymous = AirflowApi.of(run_of(target), None)  # simple_auth_manager_all_admins
    assert (anonymous.login, anonymous.token) == (None, None)


def test_a_user_without_a_password_or_an_unset_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AF_USER", "ann")
    monkeypatch.delenv("AF_PASSWORD", raising=False)
    target = "airflow://localhost:8080/load_day"
    with pytest.raises(Refused) as half:
        AirflowApi.of(run_of(target, username_env="AF_USER"), None)
    assert half.value.code == "TargetMisconfigured"
    with pytest.raises(Refused) as unset:
        AirflowApi.of(run_of(target, username_env="AF_USER", password_env="AF_PASSWORD"), None)
    assert unset.value.code == "SecretMissing" and "$AF_PASSWORD" in unset.value.message


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS512'})}.{part(claims)}.c2ln"


def test_a_tokens_expiry_is_read_from_its_claims_and_is_never_when_it_does_not_say() -> None:
    assert token_expiry(_jwt({"sub": "ann", "exp": 1_790_000_000})) == 1_790_000_000
    assert token_expiry(_jwt({"sub": "ann"})) == float("inf")
    assert token_expiry("not-a-jwt") == float("inf")

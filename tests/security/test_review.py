"""Security review, behaviour: parameters never reach a shell, payloads stay data, secrets
stay out of logs and API errors. Each test feeds hostile input through the real path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from sensors.api.state import TOKEN_COOKIE
from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.store import RunStore
from tests.fixtures.engine import FLOWS, Api, finished_run
from triggers import publish
from triggers.cloud_events import load_cloud_events
from triggers.errors import DeclarationError, StoreError
from triggers.settings import Settings
from triggers.targets import placeholders, render

pytestmark = pytest.mark.integration

HOSTILE = [
    "x; touch {marker} #",
    "$(touch {marker})",
    "`touch {marker}`",
    "x && touch {marker}",
    "x\ntouch {marker}",
    "{{7*7}} {run_name} ${HOME} %s",
]


@pytest.mark.parametrize("template", HOSTILE)
async def test_a_flow_gets_hostile_parameter_values_verbatim_and_no_shell_runs_them(
    template: str, store: RunStore, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    value = template.replace("{marker}", str(marker))
    out = tmp_path / "seen.json"
    event = await publish.aio("data_updated", {"table": value, "out": str(out)})
    run = await finished_run(store, event)
    assert run.parameters["table"] == value
    assert json.loads(out.read_text())["parameters"]["table"] == value
    assert not marker.exists()


def test_a_target_template_fills_values_once_and_never_reads_into_them() -> None:
    values = {"a": "{b}", "b": "the secret", "c": "{{7*7}}", "d": "${HOME}"}
    assert render("/x/{a}/{c}/{d}", values, typed=False) == "/x/{b}/{{7*7}}/${HOME}"
    assert render({"k": "{a}", "n": ["{c}"]}, values, typed=True) == {"k": "{b}", "n": ["{{7*7}}"]}
    for reaching in ("{a.__class__}", "{a[0]}", "{a!r}", "{a:>10}", "{0}"):
        with pytest.raises(DeclarationError):
            placeholders(reaching)


async def test_the_web_page_shows_payload_markup_and_template_syntax_as_text(
    api: Api, store: RunStore
) -> None:
    hostile = "<script>alert(1)</script>{{7*7}}{% raw %}"
    event = await publish.aio("data_updated", {"table": hostile})
    run = await finished_run(store, event)
    async with httpx.AsyncClient(base_url=api.url) as client:
        client.cookies.set(TOKEN_COOKIE, api.tokens["read"])
        page = await client.get(f"/runs/{run.project}/{run.domain}/{run.name}")
    assert page.status_code == 200, page.text
    assert "<script>alert(1)</script>" not in page.text
    # As text: HTML-escaped, or in JSON with <, > and & as \u escapes (Jinja's tojson)
    shown = ("&lt;script&gt;alert(1)&lt;/script&gt;", "\\u003cscript\\u003ealert(1)")
    assert any(form in page.text for form in shown), page.text
    assert "{{7*7}}{% raw %}" in page.text
    assert ">49<" not in page.text


def test_a_config_file_with_a_python_tag_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "cloud_events.yaml"
    config.write_text(f'enable: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ValueError, match="could not determine a constructor"):
        load_cloud_events(config)
    assert not marker.exists()


async def test_store_errors_hide_the_database_password() -> None:
    url = "postgresql+asyncpg://tripwire:pw-7f3a9-secret@127.0.0.1:1/tripwire"
    with pytest.raises(StoreError) as caught:
        await RunStore.open(url)
    assert "pw-7f3a9-secret" not in str(caught.value)
    assert "tripwire:***@127.0.0.1:1" in str(caught.value)


async def test_the_database_password_stays_out_of_the_logs_of_the_worker_and_its_runs(
    engine_env: dict[str, str], pg_url: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # The machine's PostgreSQL trusts local users, so it takes any password: this one is
    # only there to be looked for.
    secret = "pw-7f3a9-secret"
    url = pg_url.replace("@", f":{secret}@", 1)
    caplog.set_level(logging.DEBUG)
    async with Engine(Settings(database_url=url), discover_flows([FLOWS])) as engine:
        await engine.wait_ready(timeout=30)
        assert engine.store is not None
        event = await publish.aio("data_updated", {"table": "t"})
        run = await finished_run(engine.store, event)
        await publish.aio("explode", {"reason": "to log a failure"})
    run_log = Path(engine_env["TRIPWIRE_HOME"], "runs", run.name, "run.log").read_text()
    assert "engine started" in caplog.text
    assert secret not in caplog.text
    assert secret not in run_log


async def test_api_errors_never_echo_a_token_or_a_webhook_secret(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        answers = [
            await client.post(
                "/api/v1/events/github.push",
                params={"source": "github"},
                content=b"{}",
                headers={"X-Tripwire-Signature": "sha256=" + "0" * 64},
            ),
            await client.post("/api/v1/events/x", json={}, headers=api.headers("read")),
            await client.get("/api/v1/runs/a/b/nope", headers=api.headers("admin")),
            await client.post("/api/v1/events/bad name", json=[1], headers=api.headers("publish")),
        ]
    text = "".join(a.text + json.dumps(dict(a.headers)) for a in answers)
    assert [a.status_code for a in answers] == [401, 403, 404, 422]
    assert "s3cr3t-webhook" not in text
    for token in api.tokens.values():
        assert token not in text

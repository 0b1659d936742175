"""The HTTP API against the real engine, broker and store, over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sensors.api import ApiServer
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import Api, api_settings, finished_run
from tests.fixtures.signals import waiting_run
from tests.fixtures.waits import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(api: Api) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        yield http  # type: ignore[misc]


async def test_a_published_event_is_acknowledged_then_triggers_its_run(
    api: Api, client: httpx.AsyncClient, store: RunStore
) -> None:
    # When an ETL job publishes over HTTP with its own id and time
    event_id = f"etl-{uuid.uuid4()}"
    answer = await client.post(
        "/api/v1/events/data_updated",
        params={"id": event_id, "time": "2026-11-23T10:00:00Z", "source": "etl://nightly"},
        json={"rows": "42"},
        headers=api.headers("publish"),
    )
    # Then it gets 202 with the id once the broker has the event
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"id": event_id, "ids": [event_id]}
    # And the event triggers its run, with the payload mapped and the attributes kept
    run = await finished_run(store, event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED and run.parameters["rows"] == 42
    [event] = run.events
    assert event["source"] == "etl://nightly"
    assert datetime.fromisoformat(event["time"]) == datetime(2026, 11, 23, 10, tzinfo=UTC)


async def test_cloudevents_structured_binary_and_batched_are_accepted(
    api: Api, client: httpx.AsyncClient, store: RunStore
) -> None:
    ids = [f"ce-{uuid.uuid4()}" for _ in range(4)]
    structured = {"specversion": "1.0", "id": ids[0], "source": "/crm", "type": "data_updated"}
    one = await client.post(
        "/api/v1/events/data_updated",
        content=json.dumps({**structured, "data": {"rows": 1}}),
        headers={**api.headers("publish"), "content-type": "application/cloudevents+json"},
    )
    assert one.status_code == 202, one.text
    binary = await client.post(
        "/api/v1/events/data_updated",
        json={"rows": 2},
        headers={
            **api.headers("publish"),
            "ce-specversion": "1.0",
            "ce-id": ids[1],
            "ce-source": "/crm",
            "ce-type": "data_updated",
        },
    )
    assert binary.status_code == 202, binary.text
    batch = [{**structured, "id": i, "data": {"rows": n}} for n, i in enumerate(ids[2:], 3)]
    many = await client.post(
        "/api/v1/events/data_updated",
        content=json.dumps(batch),
        headers={**api.headers("publish"), "content-type": "application/cloudevents-batch+json"},
    )
    assert many.status_code == 202 and many.json()["ids"] == ids[2:]
    for n, event_id in enumerate(ids, 1):
        run = await finished_run(store, event_id)
        assert run.parameters["rows"] == n


async def test_credentials_are_checked_and_never_echoed(
    api: Api, client: httpx.AsyncClient
) -> None:
    url = "/api/v1/events/orders.loaded"
    missing = await client.post(url, json={})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == "unauthorized"
    assert "Authorization: Bearer" in missing.json()["message"]
    wrong = await client.post(url, json={}, headers={"Authorization": "Bearer tw_not-a-token"})
    assert wrong.status_code == 401 and "tw_not-a-token" not in wrong.text
    malformed = await client.post(url, json={}, headers={"Authorization": "Basic abc"})
    assert malformed.status_code == 401 and "malformed" in malformed.json()["message"]
    # A read token cannot publish; a publish token cannot read or abort
    reader = await client.post(url, json={}, headers=api.headers("read"))
    assert reader.status_code == 403 and "needs 'publish'" in reader.json()["message"]
    assert (await client.get("/api/v1/runs", headers=api.headers("publish"))).status_code == 403
    abort = await client.request("DELETE", "/api/v1/runs/a/b/c", headers=api.headers("publish"))
    assert abort.status_code == 403
    # A token limited to event prefixes, and one limited to projects
    assert (await client.post(url, json={}, headers=api.headers("orders"))).status_code == 202
    other = await client.post("/api/v1/events/payments", json={}, headers=api.headers("orders"))
    assert other.status_code == 403 and "starting with ['orders.']" in other.json()["message"]
    runs = await client.get("/api/v1/runs", headers=api.headers("other"))
    assert runs.status_code == 200
    elsewhere = await client.get(
        "/api/v1/runs", params={"project": "default"}, headers=api.headers("other")
    )
    assert elsewhere.status_code == 403 and "only projects ['other']" in elsewhere.json()["message"]
    for scope, token in api.tokens.items():
        assert token not in missing.text + wrong.text + reader.text + other.text, scope


async def test_a_webhook_signed_with_its_secret_publishes_without_a_token(
    api: Api, client: httpx.AsyncClient
) -> None:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    good = "sha256=" + hmac.new(b"s3cr3t-webhook", body, hashlib.sha256).hexdigest()
    url = "/api/v1/events/github.push"
    params = {"source": "github"}
    headers = {"content-type": "application/json"}
    ok = await client.post(
        url, params=params, content=body, headers={**headers, "X-Tripwire-Signature": good}
    )
    assert ok.status_code == 202, ok.text
    tampered = await client.post(
        url, params=params, content=body + b" ", headers={**headers, "X-Tripwire-Signature": good}
    )
    assert tampered.status_code == 401 and "invalid X-Tripwire-Signature" in tampered.text
    unsigned = await client.post(url, params=params, content=body, headers=headers)
    assert unsigned.status_code == 401 and "missing X-Tripwire-Signature" in unsigned.text
    stranger = await client.post(
        url,
        params={"source": "gitlab"},
        content=body,
        headers={**headers, "X-Tripwire-Signature": good},
    )
    assert stranger.status_code == 401 and "no webhook source 'gitlab'" in stranger.text
    # The source's secret only opens its own event names
    elsewhere = await client.post(
        "/api/v1/events/deploy",
        params=params,
        content=body,
        headers={**headers, "X-Tripwire-Signature": good},
    )
    assert elsewhere.status_code == 403
    assert "s3cr3t-webhook" not in ok.text + tampered.text + unsigned.text + stranger.text


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "says"),
    [
        ("data_updated", b"{not json", {}, 400, "not valid JSON"),
        ("data_updated", b"[1, 2]", {}, 400, "must be a JSON object"),
        ("data_updated", b'"text"', {}, 400, "must be a JSON object"),
        ("bad name!", b"{}", {}, 422, "invalid event name"),
        ("data_updated", b"{}", {"content-type": "text/csv"}, 415, "not accepted"),
        (
            "data_updated",
            b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "other"}',
            {"content-type": "application/cloudevents+json"},
            422,
            "post it to /api/v1/events/other",
        ),
        ("data_updated", b"[]", {"content-type": "application/cloudevents-batch+json"}, 400, ""),
    ],
)
async def test_bad_publish_requests_get_a_clear_json_error(
    api: Api,
    client: httpx.AsyncClient,
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    answer = await client.post(
        f"/api/v1/events/{path}",
        content=content,
        headers={"content-type": "application/json", **headers, **api.headers("publish")},
    )
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "message"} and says in body["message"]


async def test_a_body_over_the_limit_gets_413_and_a_bad_time_422(
    api: Api, client: httpx.AsyncClient
) -> None:
    huge = {"blob": "x" * (api.settings.api_max_body_bytes + 1)}
    answer = await client.post("/api/v1/events/big", json=huge, headers=api.headers("publish"))
    assert answer.status_code == 413 and "TRIPWIRE_API_MAX_BODY_BYTES" in answer.text
    payload = {"blob": "x" * (api.settings.max_payload_bytes + 1)}
    over = await client.post("/api/v1/events/big", json=payload, headers=api.headers("publish"))
    assert over.status_code == 413 and "TRIPWIRE_MAX_PAYLOAD_BYTES" in over.text
    late = await client.post(
        "/api/v1/events/big", params={"time": "yesterday"}, json={}, headers=api.headers("publish")
    )
    assert late.status_code == 422 and "is not ISO 8601" in late.json()["message"]


async def test_runs_can_be_listed_read_aborted_and_recovered(
    api: Api, client: httpx.AsyncClient, store: RunStore
) -> None:
    event_id = await _publish(client, api, "data_updated", {"rows": 7})
    run = await finished_run(store, event_id)
    base = f"/api/v1/runs/{run.project}/{run.domain}"
    listed = await client.get(
        "/api/v1/runs", params={"flow": run.flow}, headers=api.headers("read")
    )
    assert run.name in [r["name"] for r in listed.json()]
    detail = (await client.get(f"{base}/{run.name}", headers=api.headers("read"))).json()
    assert detail["run"]["phase"] == "SUCCEEDED"
    assert [c["phase"] for c in detail["history"] if c["attempt"] is None][-1] == "SUCCEEDED"
    missing = await client.get(f"{base}/no-such-run", headers=api.headers("read"))
    assert missing.status_code == 404 and "no run named 'no-such-run'" in missing.text
    # Abort of a finished run changes nothing
    aborted = await client.request(
        "DELETE", f"{base}/{run.name}", json={"cause": "late"}, headers=api.headers()
    )
    assert aborted.status_code == 200 and aborted.json()["changed"] is False
    # Recover runs it again under NAME-r1
    again = await client.post(
        "/api/v1/runs/recover",
        json={"project": run.project, "domain": run.domain, "name": run.name},
        headers=api.headers(),
    )
    assert again.status_code == 201, again.text
    assert again.json()["name"] == f"{run.name}-r1"
    assert again.json()["recovered_from"] == run.name


async def test_a_run_is_created_by_hand_and_an_unknown_parameter_is_refused_naming_the_real_ones(
    api: Api, client: httpx.AsyncClient, store: RunStore
) -> None:
    where = {"project": api.settings.project, "domain": api.settings.domain}
    typo = await client.post(
        "/api/v1/runs",
        json={**where, "flow": "refresh", "parameters": {"rowz": 5}},
        headers=api.headers(),
    )
    assert typo.status_code == 422, typo.text
    assert typo.json()["error"] == "invalid_parameters"
    assert "flow 'refresh' has no parameter 'rowz' (did you mean 'rows'?)" in typo.json()["message"]
    made = await client.post(
        "/api/v1/runs",
        json={**where, "flow": "refresh", "parameters": {"rows": 5}, "name": "by-hand-1"},
        headers=api.headers(),
    )
    assert made.status_code == 201 and made.json()["created"] is True, made.text
    assert made.json()["run"]["parameters"]["rows"] == 5
    same = {**where, "flow": "refresh", "name": "by-hand-1"}
    again = await client.post("/api/v1/runs", json=same, headers=api.headers())
    assert again.json()["created"] is False
    reader = await client.post(
        "/api/v1/runs", json={**where, "flow": "refresh"}, headers=api.headers("read")
    )
    assert reader.status_code == 403


async def test_a_waiting_run_is_signalled_over_http_with_type_checks(
    api: Api, client: httpx.AsyncClient, store: RunStore
) -> None:
    event_id = await _publish(client, api, "needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    base = f"/api/v1/runs/{run.project}/{run.domain}/{run.name}/events"
    [waiting] = (await client.get(base, headers=api.headers("read"))).json()
    assert (waiting["name"], waiting["phase"], waiting["expected_type"]) == (
        "approval",
        "RUNNING",
        "bool",
    )
    wrong = await client.post(
        f"{base}/approval/signal", json={"value": "yes"}, headers=api.headers("publish")
    )
    assert wrong.status_code == 422 and "expects a bool" in wrong.json()["message"]
    unknown = await client.post(
        f"{base}/approvl/signal", json={"value": True}, headers=api.headers("publish")
    )
    assert unknown.status_code == 404
    given = await client.post(
        f"{base}/approval/signal", json={"value": True}, headers=api.headers("publish")
    )
    assert given.status_code == 200 and given.json()["phase"] == "SUCCEEDED"
    twice = await client.post(
        f"{base}/approval/signal", json={"value": False}, headers=api.headers("publish")
    )
    assert twice.status_code == 409 and "signalled already" in twice.json()["message"]
    assert (await finished_run(store, event_id)).phase == WorkflowPhase.SUCCEEDED


async def test_sensors_say_what_they_wait_for(api: Api, client: httpx.AsyncClient) -> None:
    listed = await client.get("/api/v1/sensors", headers=api.headers("read"))
    ids = [s["sensor"]["sensor_id"] for s in listed.json()]
    assert "refresh.trigger" in ids
    one = await client.get("/api/v1/sensors/refresh.trigger", headers=api.headers("read"))
    assert one.json()["dependencies"][0]["event"] == "data_updated"
    none = await client.get("/api/v1/sensors/nope.trigger", headers=api.headers("read"))
    assert none.status_code == 404


async def test_readiness_and_metrics(api: Api, client: httpx.AsyncClient, store: RunStore) -> None:
    event_id = await _publish(client, api, "data_updated", {"rows": 1})
    await finished_run(store, event_id)
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ok",
        "broker": "ok",
        "database": "ok",
    }
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/metrics")).status_code == 401
    text = (await client.get("/metrics", headers=api.headers("read"))).text
    for name in (
        'tripwire_events_received_total{via="json"}',
        "tripwire_events_published_total",
        "tripwire_publish_latency_seconds_bucket",
        'tripwire_sensor_fires_total{sensor="refresh.trigger"}',
        'tripwire_runs{phase="SUCCEEDED"}',
        "tripwire_consumer_lag{",
    ):
        assert name in text, name


async def test_with_the_broker_down_readiness_says_so_and_publish_answers_503(
    engine_env: dict[str, str],
) -> None:
    settings, tokens = api_settings(kafka_bootstrap="127.0.0.1:1", publish_timeout=2)
    server = ApiServer(settings)
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == "ok"
            assert ready.json()["broker"].startswith("unavailable")
            answer = await client.post(
                "/api/v1/events/data_updated",
                json={},
                headers={"Authorization": f"Bearer {tokens['publish']}"},
            )
            assert answer.status_code == 503
            assert "127.0.0.1:1 is unreachable" in answer.json()["message"]
    finally:
        await server.stop()


async def test_each_token_is_rate_limited_with_retry_after(engine: object) -> None:
    # A token every 4 s: the burst is spent before one comes back, however slow the machine
    settings, tokens = api_settings(api_rate_limit=0.25, api_rate_burst=3)
    server = ApiServer(settings)
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            read = {"Authorization": f"Bearer {tokens['read']}"}
            codes = [
                (await client.get("/api/v1/sensors", headers=read)).status_code for _ in range(5)
            ]
            assert codes[:3] == [200, 200, 200] and codes[3] == 429
            limited = await client.get("/api/v1/sensors", headers=read)
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert limited.json()["error"] == "rate_limited"
            # Another token has its own bucket
            admin = {"Authorization": f"Bearer {tokens['admin']}"}
            assert (await client.get("/api/v1/sensors", headers=admin)).status_code == 200
            await asyncio.sleep(4.1)  # the time a token takes to come back
            assert (await client.get("/api/v1/sensors", headers=read)).status_code == 200
    finally:
        await server.stop()


async def _publish(client: httpx.AsyncClient, api: Api, name: str, payload: dict) -> str:
    answer = await client.post(f"/api/v1/events/{name}", json=payload, headers=api.headers())
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def test_the_openapi_document_describes_every_route(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths) >= {
        "/api/v1/events/{name}",
        "/api/v1/runs",
        "/api/v1/runs/{project}/{domain}/{name}",
        "/api/v1/runs/recover",
        "/api/v1/sensors",
        "/api/v1/sensors/{sensor_id}",
        "/api/v1/runs/{project}/{domain}/{name}/events",
        "/api/v1/runs/{project}/{domain}/{name}/events/{event}/signal",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert set(paths["/api/v1/runs/{project}/{domain}/{name}"]) == {"get", "delete"}
    assert set(paths["/api/v1/runs"]) == {"get", "post"}
    publish = paths["/api/v1/events/{name}"]["post"]
    assert set(publish["requestBody"]["content"]) == {
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    }
    await eventually(lambda: True, "nothing")


METAFLOW_PUBLISH = """
import json, sys
from metaflow.integrations import ArgoEvent
event = ArgoEvent("data_updated", url=sys.argv[1], access_token=sys.argv[2] or None)
print(event.publish({"table": "orders", "rows": 7}, ignore_errors=False))
"""


async def _metaflow_publishes(api: Api, home: Path, token: str, **env: str) -> str:
    """Publish ``data_updated`` with Metaflow's own ArgoEvent, in a process of its own, as a
    Metaflow user's flow or script would; return the event id it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        METAFLOW_PUBLISH,
        f"{api.url}/api/v1/events",
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "METAFLOW_HOME": str(home), **env},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]


@pytest.mark.parametrize("auth", ["access_token", "service_headers"])
async def test_metaflows_argo_event_publishes_unchanged_and_triggers_its_run(
    api: Api, store: RunStore, auth: str, tmp_path: Path
) -> None:
    # Given a Metaflow user pointing ArgoEvent at the API, with a token of scope publish
    # passed as its access_token, or in METAFLOW_SERVICE_HEADERS
    token = api.tokens["publish"]
    service = {
        "METAFLOW_ARGO_EVENTS_WEBHOOK_AUTH": "service",
        "METAFLOW_SERVICE_HEADERS": json.dumps({"Authorization": f"Bearer {token}"}),
    }
    if auth == "access_token":
        event_id = await _metaflow_publishes(api, tmp_path, token)
    else:
        event_id = await _metaflow_publishes(api, tmp_path, "", **service)
    # Then the run it triggers has the payload's parameters, and Metaflow's id as its event's
    run = await finished_run(store, event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert (run.parameters["table"], run.parameters["rows"]) == ("orders", 7)
    [event] = run.events
    assert event["id"] == event_id and event["name"] == "data_updated"
    assert abs(datetime.fromisoformat(event["time"]) - datetime.now(UTC)).total_seconds() < 600


async def test_the_argo_events_shape_says_what_is_wrong_with_a_body(
    api: Api, client: httpx.AsyncClient
) -> None:
    async def post(body: object) -> httpx.Response:
        return await client.post("/api/v1/events", json=body, headers=api.headers("publish"))

    assert (await client.post("/api/v1/events", json={"name": "data_updated"})).status_code == 401
    missing = await post({"payload": {"rows": 1}})
    assert missing.status_code == 400 and "/api/v1/events/{name}" in missing.text
    extra = await post({"name": "data_updated", "payload": {}, "body": {}})
    assert extra.status_code == 422 and "['body']" in extra.text
    stamp = await post({"name": "data_updated", "payload": {"timestamp": "yesterday"}})
    assert stamp.status_code == 422 and "epoch seconds" in stamp.text
    bad_name = await post({"name": "no spaces please", "payload": {}})
    assert bad_name.status_code == 422
    ok = await post({"name": "data_updated", "payload": {"id": 42, "timestamp": 1764547200}})
    assert ok.status_code == 202 and ok.json()["id"] == "42"

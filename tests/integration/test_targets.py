"""command:// and http(s):// targets, launched by a real worker: real processes, a real server."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes.aio import client

from sensors.engine import Engine
from sensors.launchers.http import HttpLauncher
from sensors.registry import discover_flows
from sensors.runs import history as runs_history
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from sensors.runs.tables import run_attempts
from tests.fixtures.engine import finished_run, tripwire_cli
from tests.fixtures.runs import claimed_run, new_run
from tests.fixtures.tracing import Traced
from tests.fixtures.waits import eventually
from triggers import publish, tracing
from triggers.settings import Settings

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples"
COMPLETE = {"type": "Complete", "status": "True"}


@dataclass
class Hook:
    """A local web hook that answers from a script, per path, and records every request."""

    url: str
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def answer(self, path: str) -> tuple[int, dict[str, str]]:
        steps = self.script.get(path) or [(200, {})]
        return steps.pop(0) if len(steps) > 1 else steps[0]

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(body) for p, _, body in self.requests if p == path]


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append((self.path, dict(self.headers), body))
            status, headers = state.answer(self.path)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None: ...

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


FLOWS = """
import sys
from triggers import target, trigger

WRITE = (
    "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2]); "
    "print('wrote', sys.argv[2])"
)

@target("command://", argv=[sys.executable, "-c", WRITE, "{out}", "{value}"])
@trigger(event="write_it")
def write_it(out: str = "", value: str = "") -> None: ...

@target("command://", argv=[sys.executable, "-c", "import sys; sys.exit(3)"])
@trigger(event="fail_it", retries=1, retry_backoff="1s")
def fail_it() -> None: ...

@target("command://", argv=["/nonexistent/tool"])
@trigger(event="missing_tool")
def missing_tool() -> None: ...

@target("HOOK_URL/ok", body={"day": "{day}", "rows": "{rows}", "run": "{run_name}"},
        hmac_secret_env="HOOK_KEY", backoff="100ms")
@trigger(event="call_ok")
def call_ok(day: str = "", rows: int = 0) -> None: ...

@target("HOOK_URL/flaky", backoff="100ms", retries=3)
@trigger(event="call_flaky")
def call_flaky() -> None: ...

@target("HOOK_URL/refuse", backoff="100ms")
@trigger(event="call_refused")
def call_refused() -> None: ...

@target("HOOK_URL/down", backoff="100ms", max_backoff="200ms", retries=2)
@trigger(event="call_down")
def call_down() -> None: ...
"""


@pytest.fixture
async def worker(
    engine_env: dict[str, str], hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunStore]:
    monkeypatch.setenv("HOOK_KEY", "s3cret")
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "targets.py").write_text(FLOWS.replace("HOOK_URL", hook.url))
    async with Engine(Settings(), discover_flows([flows])) as running:
        await running.wait_ready(timeout=30)
        assert running.store is not None
        yield running.store


async def test_a_command_gets_values_as_argv_items_and_no_shell_sees_them(
    worker: RunStore, engine_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a value that a shell would run
    out, hostile = tmp_path / "out.txt", '"; touch /tmp/pwned-by-tripwire; echo "'
    event = await publish.aio("write_it", {"out": str(out), "value": hostile})
    run = await finished_run(worker, event)
    # Then the command got it as one argument, and nothing ran it
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert out.read_text() == hostile
    assert not Path("/tmp/pwned-by-tripwire").exists()
    # And its output is the run's log, which the CLI prints
    logs = await tripwire_cli(engine_env, "runs", "logs", run.name)
    assert logs.returncode == 0 and f"wrote {hostile}" in logs.stdout


async def test_a_command_that_exits_non_zero_fails_as_user_and_is_retried(
    worker: RunStore,
) -> None:
    run = await finished_run(worker, await publish.aio("fail_it"))
    assert run.phase == WorkflowPhase.FAILED and run.error is not None
    assert (run.error.kind, run.error.code, run.attempts) == (ErrorKind.USER, "NonZeroExit", 2)
    assert "exited with code 3" in run.error.message


async def test_a_command_that_cannot_start_fails_as_system_naming_it(worker: RunStore) -> None:
    run = await finished_run(worker, await publish.aio("missing_tool"))
    assert run.error is not None and run.error.kind == ErrorKind.SYSTEM
    assert run.error.code == "CommandNotStarted" and "/nonexistent/tool" in run.error.message


async def test_a_web_hook_gets_the_rendered_body_signed_with_an_idempotency_key(
    worker: RunStore, hook: Hook
) -> None:
    run = await finished_run(worker, await publish.aio("call_ok", {"day": "mon", "rows": 7}))
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    [(_, headers, body)] = hook.requests
    assert json.loads(body) == {"day": "mon", "rows": 7, "run": run.name}
    assert headers["Idempotency-Key"] == run.name
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Tripwire-Signature"] == f"sha256={expected}"


async def test_a_web_hook_is_retried_on_5xx_and_429_honouring_retry_after(
    worker: RunStore, hook: Hook
) -> None:
    hook.script["/flaky"] = [(503, {}), (429, {"Retry-After": "1"}), (202, {})]
    run = await finished_run(worker, await publish.aio("call_flaky"))
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error
    assert len(hook.bodies("/flaky")) == 3
    assert run.attempts == 1  # transport retries stay inside one attempt


async def test_a_refusing_web_hook_fails_the_run_as_user_with_its_answer(
    worker: RunStore, hook: Hook
) -> None:
    hook.script["/refuse"] = [(400, {})]
    run = await finished_run(worker, await publish.aio("call_refused"))
    assert run.error is not None and (run.error.kind, run.error.code) == (ErrorKind.USER, "HTTP400")
    assert len(hook.bodies("/refuse")) == 1


async def test_a_web_hook_that_stays_down_fails_as_system_after_its_retries(
    worker: RunStore, hook: Hook
) -> None:
    hook.script["/down"] = [(502, {})]
    run: RunRecord = await finished_run(worker, await publish.aio("call_down"))
    assert run.error is not None and run.error.kind == ErrorKind.SYSTEM
    assert run.error.code == "HttpUnavailable" and "failed 3 time(s)" in run.error.message
    assert len(hook.bodies("/down")) == 3


async def test_the_targets_example_runs_on_each_of_its_targets(
    engine_env: dict[str, str], hook: Hook, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given examples/targets.py, with its web hook and its cluster here
    async with kmock.KubernetesEmulator() as k8s, kmock.Server(k8s):
        k8s.resources["batch/v1/jobs"] = {"kind": "Job", "namespaced": True}
        k8s.resources["v1/pods"] = {"kind": "Pod", "namespaced": True}
        k8s.resources["argoproj.io/v1alpha1/workflows"] = {"kind": "Workflow", "namespaced": True}
        monkeypatch.setenv("CI_HOOK_URL", f"{hook.url}/hooks/run")
        monkeypatch.setenv("CI_HOOK_KEY", "k")
        monkeypatch.setenv("TRIPWIRE_KUBE_API_URL", str(k8s.url))
        monkeypatch.setenv("TRIPWIRE_KUBE_POLL_INTERVAL", "0.1")
        # A copy: the example reads CI_HOOK_URL when imported, and this process may have
        # imported examples/targets.py already (modules are cached by path).
        example = tmp_path / "targets_example.py"
        example.write_text((EXAMPLES / "targets.py").read_text())
        async with Engine(Settings(), discover_flows([example])) as running:
            await running.wait_ready(timeout=30)
            assert running.store is not None
            store = running.store
            # When each of its events is published
            ids = {
                "command_report": await publish.aio("report_requested", {"day": "2026-11-23"}),
                "ci_rebuild": await publish.aio("rebuild_requested", {"day": "mon", "rows": 3}),
                "train_model": await publish.aio("features_ready", {"day": "mon"}),
                "nightly_etl": await publish.aio("raw_landed", {"day": "mon"}),
            }
            # (the cluster's controllers finish the Job and the Workflow)
            job = await _created(k8s, "batch/v1/jobs", "train-model")
            await _set_status(k8s, "batch", "jobs", job, {"conditions": [COMPLETE]})
            workflow = await _created(k8s, "argoproj.io/v1alpha1/workflows", "nightly-etl")
            await _set_status(k8s, "argoproj.io", "workflows", workflow, {"phase": "Succeeded"})
            runs = {flow: await finished_run(store, event) for flow, event in ids.items()}
    # Then every target ran its flow to success
    assert {flow: r.phase for flow, r in runs.items()} == dict.fromkeys(
        ids, WorkflowPhase.SUCCEEDED
    )
    assert hook.bodies("/hooks/run")[0]["rows"] == 3


async def _created(k8s: kmock.KubernetesEmulator, resource: str, prefix: str) -> str:
    """The name of the object of ``resource`` whose name starts with ``prefix``, once made."""

    def probe() -> str | None:
        names = [key[2] for key in k8s.objects if key[0] == resource]
        return next((n for n in names if n.startswith(prefix)), None)

    found: str = await eventually(probe, f"a {resource} object {prefix}-...")
    return found


async def _set_status(
    k8s: kmock.KubernetesEmulator, group: str, plural: str, name: str, status: dict[str, Any]
) -> None:
    """Patch an object's status through the API, as its controller would."""
    config = client.Configuration(host=str(k8s.url).rstrip("/"))
    async with client.ApiClient(config) as api:
        if group == "batch":
            await client.BatchV1Api(api).patch_namespaced_job_status(
                name, "data", {"status": status}
            )
        else:
            await client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                group, "v1alpha1", "data", plural, name, {"status": status}
            )


async def test_a_call_whose_worker_died_is_made_again_by_another_worker(
    hook: Hook, tmp_path: Path
) -> None:
    # Given a web hook run whose worker died mid-call, ten lease renewals ago
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as store:
        request = new_run("call-ok-1").model_copy(
            update={"target": f"{hook.url}/ok", "target_options": {}}
        )
        await store.create_run(request)
        run = await store.transition(
            "p", "d", "call-ok-1", WorkflowPhase.RUNNING, expected=WorkflowPhase.QUEUED
        )
        await runs_history.start_attempt(store, *run.key, pid=None, worker="gone:1")
        async with store.connection(write=True) as conn:
            long_ago = datetime.now(UTC) - timedelta(minutes=5)
            await conn.execute(run_attempts.update().values(updated_at=long_ago))
        # When another worker's launcher looks for unwatched calls
        launcher = HttpLauncher(settings=Settings(home=tmp_path), store=store)
        try:
            assert await launcher.adopt() == ["call-ok-1"]
            done = await eventually(
                lambda: _finished(store, "call-ok-1"), "the call made again", timeout=20
            )
        finally:
            await launcher.close()
        attempts = await runs_history.attempts(store, *run.key)
    # Then it called again, with the same idempotency key, and the run succeeded
    assert done.phase == WorkflowPhase.SUCCEEDED
    assert [a.phase for a in attempts] == [AttemptPhase.FAILED, AttemptPhase.SUCCEEDED]
    assert attempts[0].error is not None and attempts[0].error.code == "WorkerLost"
    assert [h["Idempotency-Key"] for _, h, _ in hook.requests] == ["call-ok-1"]


async def _finished(store: RunStore, name: str) -> RunRecord | None:
    run = await store.get_run(name, project="p", domain="d")
    return run if run.finished_at else None


@pytest.mark.parametrize("spans", [True, False], ids=["spans", "no-spans"])
async def test_a_traced_runs_call_carries_its_trace_context_in_w3c_headers(
    hook: Hook, tmp_path: Path, spans: bool, request: pytest.FixtureRequest
) -> None:
    # Given a web hook run in a trace, on a worker that records spans or not
    traced: Traced | None = request.getfixturevalue("traced") if spans else None
    if not spans:
        request.getfixturevalue("monkeypatch").setattr(tracing, "spans", False)
    stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as store:
        run = await claimed_run(
            store,
            new_run("call-traced").model_copy(
                update={
                    "target": f"{hook.url}/ok",
                    "target_options": {},
                    "traceparent": stored,
                    "tracestate": "rojo=1",
                }
            ),
        )
        # When it is called
        launcher = HttpLauncher(settings=Settings(home=tmp_path), store=store)
        try:
            await launcher.launch(run)
            await eventually(lambda: _finished(store, run.name), "the call", timeout=20)
        finally:
            await launcher.close()
    [(_, headers, _)] = hook.requests
    # Then the receiver gets the trace context: its attempt's span, else the run's own
    if traced is None:
        assert (headers["traceparent"], headers["tracestate"]) == (stored, "rojo=1")
        return
    [attempt] = [s for s in traced.spans.get_finished_spans() if s.name == "attempt 1"]
    assert headers["traceparent"].split("-")[1:3] == [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        format(attempt.context.span_id, "016x"),
    ]
    assert attempt.attributes is not None
    assert attempt.attributes["tripwire.attempt.phase"] == "SUCCEEDED"

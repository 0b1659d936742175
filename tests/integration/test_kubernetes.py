"""k8s:// Jobs and argo:// Workflows against kmock's Kubernetes API emulator.

The tests play the controllers: they create the Job's pod and patch the status of
pods, Jobs and Workflows through the official client, as kube-controller-manager
and Argo would, and watch the runs follow.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes.aio import client

from sensors.launchers.argo import ArgoLauncher
from sensors.launchers.attempts import run_error
from sensors.launchers.cluster import ClusterLauncher
from sensors.launchers.kubernetes import RUN_LABEL, KubernetesLauncher
from sensors.launchers.remote import attempt_name
from sensors.runs import history as runs_history
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from sensors.runs.tables import workers
from tests.fixtures.runs import claimed_run, run_ended
from tests.fixtures.tracing import Traced
from tests.fixtures.waits import eventually
from triggers import tracing
from triggers.settings import Settings

pytestmark = pytest.mark.integration

NS = "data"


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[kmock.KubernetesEmulator, Any]]:
    """The emulator, and a client of it for the tests' side (the controllers)."""
    async with kmock.KubernetesEmulator() as k8s, kmock.Server(k8s):
        k8s.resources["batch/v1/jobs"] = {"kind": "Job", "namespaced": True}
        k8s.resources["v1/pods"] = {"kind": "Pod", "namespaced": True}
        k8s.resources["argoproj.io/v1alpha1/workflows"] = {"kind": "Workflow", "namespaced": True}
        config = client.Configuration(host=str(k8s.url).rstrip("/"))
        async with client.ApiClient(config) as api:
            yield k8s, api


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as opened:
        yield opened


def settings(k8s: kmock.KubernetesEmulator, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path, kube_api_url=str(k8s.url), kube_poll_interval=0.05, kube_image="flows:1"
    )


async def claimed(store: RunStore, target: str, **fields: Any) -> RunRecord:
    request = NewRun(
        project="p",
        domain="d",
        name=fields.pop("name", "nightly-etl-0123456789abcdef0123"),
        flow="nightly_etl",
        sensor_id="nightly_etl.trigger",
        target=target,
        entrypoint={"function": "nightly_etl", "module": "flows"},
        parameters={"day": "2026-11-23", "rows": 5},
        events=[],
        **fields,
    )
    return await claimed_run(store, request)


async def attempt_phase(store: RunStore, run: RunRecord) -> AttemptPhase | None:
    found = await runs_history.attempts(store, *run.key)
    return found[-1].phase if found else None


async def running(launcher: ClusterLauncher, run: RunRecord) -> None:
    await launcher.launch(run)


# k8s://


async def test_a_run_becomes_one_labelled_job_even_when_its_request_is_replayed(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    launcher = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"k8s://{NS}", target_options={"cpu": "500m", "memory": "1Gi"})
    try:
        await launcher.create(run, run.name)
        await launcher.create(run, run.name)  # a replay: 409, not an error
        jobs = await client.BatchV1Api(api).list_namespaced_job(
            NS, label_selector=f"{RUN_LABEL}={run.name}"
        )
    finally:
        await launcher.close()
    [job] = jobs.items
    assert job.metadata.name == run.name and job.spec.backoff_limit == 0
    [container] = job.spec.template.spec.containers
    assert container.image == "flows:1" and container.resources.limits == {
        "cpu": "500m",
        "memory": "1Gi",
    }
    env = {e.name: e.value for e in container.env}
    context = json.loads(env["TRIPWIRE_RUN_CONTEXT_JSON"])
    assert context["parameters"] == {"day": "2026-11-23", "rows": 5}
    assert container.args[:2] == ["--context-from-env", "TRIPWIRE_RUN_CONTEXT_JSON"]
    # what the run reports goes to the termination message, a file apart from its result
    assert container.termination_message_path == env["TRIPWIRE_TERMINATION_LOG"]
    assert "TRACEPARENT" not in env  # a run in no trace


async def test_job_and_pod_status_become_the_attempts_phases_up_to_success(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    launcher = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"k8s://{NS}")
    try:
        await running(launcher, run)
        await eventually(lambda: attempt_phase(store, run), "the first attempt")
        assert await attempt_phase(store, run) == AttemptPhase.INITIALIZING
        # The scheduler finds no node for the pod
        pod = {
            "metadata": {"name": f"{run.name}-x1", "labels": {"job-name": run.name}},
            "spec": {"containers": [{"name": "run", "image": "flows:1"}]},
        }
        await core.create_namespaced_pod(NS, pod)
        unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        await core.patch_namespaced_pod_status(
            pod["metadata"]["name"],
            NS,
            {"status": {"phase": "Pending", "conditions": [unschedulable]}},
        )
        await eventually(
            lambda: _is(store, run, AttemptPhase.WAITING_FOR_RESOURCES), "WAITING_FOR_RESOURCES"
        )
        await core.patch_namespaced_pod_status(
            pod["metadata"]["name"], NS, {"status": {"phase": "Running", "conditions": []}}
        )
        await eventually(lambda: _is(store, run, AttemptPhase.RUNNING), "RUNNING")
        # The run ends, its result file (a Metaflow run's pathspec) in its termination message
        result = {"ok": True, "outputs": {"metaflow": {"pathspec": "LoadFlow/7"}}}
        await core.patch_namespaced_pod_status(
            pod["metadata"]["name"], NS, {"status": _ended("Succeeded", 0, "Completed", result)}
        )
        complete = {"type": "Complete", "status": "True"}
        await batch.patch_namespaced_job_status(
            run.name, NS, {"status": {"succeeded": 1, "conditions": [complete]}}
        )
        done = await run_ended(store, run)
    finally:
        await launcher.close()
    assert done.phase == WorkflowPhase.SUCCEEDED
    assert done.outputs == result["outputs"]
    moves = [c.phase for c in await runs_history.history(store, *run.key) if c.attempt == 1]
    assert moves == ["INITIALIZING", "WAITING_FOR_RESOURCES", "RUNNING", "SUCCEEDED"]


async def test_a_flow_that_raised_in_its_pod_fails_as_user_and_is_retried_in_a_new_job(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    launcher = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"k8s://{NS}", retries=1)
    try:
        await running(launcher, run)
        await _fail_job(api, run.name, exit_code=1, reason="Error")
        await eventually(lambda: _job_exists(api, f"{run.name[:58]}-a2"), "the retry's Job")
        await _fail_job(api, f"{run.name[:58]}-a2", exit_code=137, reason="OOMKilled")
        done = await run_ended(store, run)
    finally:
        await launcher.close()
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.SYSTEM, "OOMKilled")
    first, second = await runs_history.attempts(store, *run.key)
    assert first.phase == AttemptPhase.RETRYABLE_FAILED and first.error is not None
    assert first.error.kind == ErrorKind.USER and second.phase == AttemptPhase.FAILED


async def test_abort_deletes_the_job_with_its_pods(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    launcher = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"k8s://{NS}")
    try:
        await running(launcher, run)
        await eventually(lambda: _job_exists(api, run.name), "the Job")
        await store.request_abort("p", "d", run.name, "wrong day")
        done = await run_ended(store, run)
    finally:
        await launcher.close()
    assert done.phase == WorkflowPhase.ABORTED
    assert not await _job_exists(api, run.name)
    deletes = [r for r in k8s if r.method == kmock.method.DELETE]
    assert [r.params.get("propagationPolicy") for r in deletes] == ["Background"]


async def test_a_dead_workers_job_is_watched_again_by_another(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    first = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"k8s://{NS}")
    await running(first, run)
    await eventually(lambda: _job_exists(api, run.name), "the Job")
    for task in list(first._tasks):  # the worker dies: nobody renews the lease
        task.cancel()
    await asyncio.sleep(1)  # ten looks of 0.05 s, and then some
    second = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    try:
        assert await second.adopt() == [run.name]
        complete = {"type": "Complete", "status": "True"}
        await client.BatchV1Api(api).patch_namespaced_job_status(
            run.name, NS, {"status": {"conditions": [complete]}}
        )
        done = await run_ended(store, run)
    finally:
        await second.close()
        await first.close()
    assert done.phase == WorkflowPhase.SUCCEEDED
    [attempt] = await runs_history.attempts(store, *run.key)
    assert attempt.worker == second.worker


# what every remote launcher shares (sensors.launchers.remote)


async def test_a_system_failure_is_retried_as_a_new_attempt_while_system_retries_allow(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    patient = settings(k8s, tmp_path).model_copy(update={"system_retries": 1})
    launcher = KubernetesLauncher(settings=patient, store=store)
    run = await claimed(store, f"k8s://{NS}", retries=0, retry_backoff_seconds=0.01)
    try:
        await running(launcher, run)
        await _fail_job(api, run.name, exit_code=137, reason="OOMKilled")
        retry = f"{run.name[:58]}-a2"
        await eventually(lambda: _job_exists(api, retry), "the retry's Job")
        complete = {"type": "Complete", "status": "True"}
        await client.BatchV1Api(api).patch_namespaced_job_status(
            retry, NS, {"status": {"conditions": [complete]}}
        )
        done = await run_ended(store, run)
    finally:
        await launcher.close()
    assert done.phase == WorkflowPhase.SUCCEEDED
    first, second = await runs_history.attempts(store, *run.key)
    assert first.phase == AttemptPhase.RETRYABLE_FAILED and first.error is not None
    assert (first.error.kind, first.error.code) == (ErrorKind.SYSTEM, "OOMKilled")
    assert second.phase == AttemptPhase.SUCCEEDED


async def test_a_target_that_cannot_work_fails_at_once_and_is_not_retried(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, _ = cluster
    # Given a worker with no image for k8s:// runs, and retries of both kinds to spare
    imageless = settings(k8s, tmp_path).model_copy(update={"kube_image": None, "system_retries": 3})
    launcher = KubernetesLauncher(settings=imageless, store=store)
    run = await claimed(store, f"k8s://{NS}", retries=3)
    try:
        await running(launcher, run)
        done = await run_ended(store, run)
    finally:
        await launcher.close()
    # Then the run fails with what to change, after one attempt: another would fail alike
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert (done.error.kind, done.error.code) == (ErrorKind.SYSTEM, "TargetMisconfigured")
    assert "TRIPWIRE_KUBE_IMAGE" in done.error.message
    assert len(await runs_history.attempts(store, *run.key)) == 1
    assert not [r for r in k8s if r.method == kmock.method.POST]  # no Job was asked for


async def test_a_timed_out_run_is_stopped_and_not_retried(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    launcher = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"k8s://{NS}", retries=2, timeout_seconds=0.5)
    try:
        await running(launcher, run)
        done = await run_ended(store, run)  # the Job never ends
    finally:
        await launcher.close()
    assert done.phase == WorkflowPhase.TIMED_OUT and done.error is not None
    assert done.error.code == "Timeout"
    assert len(await runs_history.attempts(store, *run.key)) == 1
    assert not await _job_exists(api, run.name)  # stopped: deleted with its pods


# argo://


async def test_a_run_becomes_a_workflow_of_its_template_that_follows_argo_to_the_end(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    custom = client.CustomObjectsApi(api)
    launcher = ArgoLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"argo://{NS}/nightly-etl")
    try:
        await running(launcher, run)
        workflow = await eventually(lambda: _workflow(api, run.name), "the Workflow")
        await launcher.create(run, run.name)  # a replay: 409, not an error
        assert workflow["spec"]["workflowTemplateRef"] == {"name": "nightly-etl"}
        assert workflow["spec"]["arguments"]["parameters"] == [
            {"name": "day", "value": "2026-11-23"},
            {"name": "rows", "value": "5"},
        ]
        assert workflow["metadata"]["labels"][RUN_LABEL] == run.name
        for phase, attempt in (("Pending", "INITIALIZING"), ("Running", "RUNNING")):
            await _argo_status(custom, run.name, phase)
            await eventually(lambda a=attempt: _is(store, run, AttemptPhase(a)), attempt)
        await _argo_status(custom, run.name, "Failed", "child 'load' failed")
        done = await run_ended(store, run)
    finally:
        await launcher.close()
    assert done.phase == WorkflowPhase.FAILED and done.error is not None
    assert done.error.kind == ErrorKind.USER and "child 'load' failed" in done.error.message


async def test_abort_shuts_the_workflow_down_and_an_argo_error_is_system(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    custom = client.CustomObjectsApi(api)
    launcher = ArgoLauncher(settings=settings(k8s, tmp_path), store=store)
    aborted = await claimed(store, f"argo://{NS}/nightly-etl")
    broken = await claimed(store, f"argo://{NS}/nightly-etl", name="nightly-etl-broken")
    try:
        await running(launcher, aborted)
        await running(launcher, broken)
        await eventually(lambda: _workflow(api, aborted.name), "the Workflow")
        await store.request_abort("p", "d", aborted.name, "stop")
        await eventually(lambda: _workflow(api, broken.name), "the other Workflow")
        await _argo_status(custom, broken.name, "Error", "pod deleted")
        results = [await run_ended(store, aborted), await run_ended(store, broken)]
    finally:
        await launcher.close()
    assert results[0].phase == WorkflowPhase.ABORTED
    shut = await _workflow(api, aborted.name)
    assert shut is not None and shut["spec"]["shutdown"] == "Terminate"
    assert results[1].error is not None and results[1].error.kind == ErrorKind.SYSTEM


# helpers: the controllers' side


async def _is(store: RunStore, run: RunRecord, phase: AttemptPhase) -> bool:
    return await attempt_phase(store, run) == phase


async def _job_exists(api: Any, name: str) -> bool:
    try:
        await client.BatchV1Api(api).read_namespaced_job(name, NS)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def _fail_job(api: Any, job: str, *, exit_code: int, reason: str) -> None:
    await eventually(lambda: _job_exists(api, job), f"Job {job}")
    core = client.CoreV1Api(api)
    pod = {
        "metadata": {"name": f"{job}-p", "labels": {"job-name": job}},
        "spec": {"containers": [{"name": "run", "image": "flows:1"}]},
    }
    await core.create_namespaced_pod(NS, pod)
    status = _ended("Failed", exit_code, reason)
    await core.patch_namespaced_pod_status(f"{job}-p", NS, {"status": status})
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    await client.BatchV1Api(api).patch_namespaced_job_status(
        job, NS, {"status": {"failed": 1, "conditions": [failed]}}
    )


def _ended(
    phase: str, exit_code: int, reason: str, result: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A pod's status once its container ended; ``result`` as its termination message."""
    terminated: dict[str, Any] = {"exitCode": exit_code, "reason": reason}
    if result is not None:
        terminated["message"] = json.dumps(result)
    return {
        "phase": phase,
        "containerStatuses": [
            {
                "name": "run",
                "image": "flows:1",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }


async def _workflow(api: Any, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", NS, "workflows", name
        )
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


async def _argo_status(custom: Any, name: str, phase: str, message: str = "") -> None:
    await custom.patch_namespaced_custom_object_status(
        "argoproj.io",
        "v1alpha1",
        NS,
        "workflows",
        name,
        {"status": {"phase": phase, "message": message}},
    )


async def test_a_retry_whose_worker_on_another_host_stopped_during_its_backoff_is_started(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    k8s, api = cluster
    # Given a run whose first Job failed in the flow, to be retried by a worker on another
    # host, whose heartbeat stopped an hour ago, while it waited out the backoff
    dead = "host-x:41:1-2-abcd"
    run = await claimed(store, f"k8s://{NS}", retries=1, retry_backoff_seconds=0.0)
    attempt = await runs_history.start_attempt(store, *run.key, pid=None, worker=dead)
    error = run_error("FlowFailed", ErrorKind.USER, "it raised", dead)
    await runs_history.finish_attempt(
        store, *run.key, attempt.number, AttemptPhase.RETRYABLE_FAILED, error
    )
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    async with store.connection(write=True) as conn:
        await conn.execute(
            workers.insert().values(
                name=dead,
                host="host-x",
                started_at=an_hour_ago,
                heartbeat_at=an_hour_ago,
                gone_at=an_hour_ago,  # a live worker found it silent
            )
        )
    launcher = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    try:
        # When a live worker looks for what nobody watches
        taken = await launcher.adopt()
        # Then it takes the retry: the second attempt's Job is created
        assert taken == [run.name]
        await eventually(lambda: _job_exists(api, attempt_name(run, 2)), "the retry's Job")
    finally:
        await launcher.close()
    attempts = await runs_history.attempts(store, *run.key)
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[1].worker == launcher.worker


async def test_a_pod_that_ended_before_its_job_concluded_is_still_the_attempt_running(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path
) -> None:
    # Found by the full suite under load: the attempt went RUNNING -> INITIALIZING when the
    # launcher looked between the pod's end and the Job controller's conclusion
    k8s, api = cluster
    core = client.CoreV1Api(api)
    launcher = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"k8s://{NS}")
    try:
        await running(launcher, run)
        await eventually(lambda: attempt_phase(store, run), "the first attempt (its Job)")
        pod = {
            "metadata": {"name": f"{run.name}-x1", "labels": {"job-name": run.name}},
            "spec": {"containers": [{"name": "run", "image": "flows:1"}]},
        }
        await core.create_namespaced_pod(NS, pod)
        for phase in ("Running", "Succeeded"):
            await core.patch_namespaced_pod_status(
                pod["metadata"]["name"], NS, {"status": {"phase": phase}}
            )
            # Then, until the Job says how it ended, the attempt is running
            seen = await launcher.observe(run, run.name)
            assert seen.phase == AttemptPhase.RUNNING, (phase, seen)
    finally:
        await launcher.close()


# the trace context a run's pods get

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_traced_runs_pod_gets_its_attempts_trace_context_in_its_env(
    cluster: tuple[kmock.KubernetesEmulator, Any], store: RunStore, tmp_path: Path, traced: Traced
) -> None:
    # Given a run in a trace, on a worker that records spans
    k8s, api = cluster
    launcher = KubernetesLauncher(settings=settings(k8s, tmp_path), store=store)
    run = await claimed(store, f"k8s://{NS}", traceparent=TRACE, tracestate="rojo=1")
    # When its first attempt's Job is created
    try:
        await running(launcher, run)
        job = await eventually(lambda: _job(api, run.name), "the Job")
    finally:
        await launcher.close()
    # Then its pod joins the trace under the attempt's span, which is the launch's child
    [container] = job.spec.template.spec.containers
    env = {e.name: e.value for e in container.env}
    spans = {s.name: s for s in traced.spans.get_finished_spans()}
    attempt, launch = spans["attempt 1"], spans["run nightly_etl"]
    assert attempt.parent is not None and attempt.parent.span_id == launch.context.span_id
    assert env["TRACEPARENT"].split("-")[1:3] == [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        format(attempt.context.span_id, "016x"),
    ]
    assert env["TRACESTATE"] == "rojo=1"


async def test_an_argo_workflow_of_a_traced_run_gives_each_step_the_runs_trace_context(
    cluster: tuple[kmock.KubernetesEmulator, Any],
    store: RunStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run in a trace, on a worker that records no spans, and one in none
    monkeypatch.setattr(tracing, "spans", False)
    k8s, api = cluster
    launcher = ArgoLauncher(settings=settings(k8s, tmp_path), store=store)
    traced_run = await claimed(store, f"argo://{NS}/nightly-etl", name="a", traceparent=TRACE)
    plain_run = await claimed(store, f"argo://{NS}/nightly-etl", name="b")
    # When their Workflows are created
    try:
        await launcher.create(traced_run, traced_run.name)
        await launcher.create(plain_run, plain_run.name)
        traced_flow = await eventually(lambda: _workflow(api, "a"), "the first Workflow")
        plain_flow = await eventually(lambda: _workflow(api, "b"), "the second Workflow")
    finally:
        await launcher.close()
    # Then every container step of the first gets the run's context, and the other's none
    defaults = traced_flow["spec"]["templateDefaults"]["container"]
    assert defaults == {"env": [{"name": "TRACEPARENT", "value": TRACE}]}
    assert "templateDefaults" not in plain_flow["spec"]


async def _job(api: Any, name: str) -> Any:
    try:
        return await client.BatchV1Api(api).read_namespaced_job(name, NS)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise

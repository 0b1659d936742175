"""``k8s://NAMESPACE``: each attempt of a run is a ``batch/v1`` Job in that namespace.

The Job's pod runs ``python -m triggers.run`` in the target's image, with the run
context in its environment, so the pod needs nothing from the worker. Its name
is the run's (``-a2``... for retries) and its labels carry the run, flow,
project and domain: a replayed request gets 409 and watches the Job that
exists. Status, as the Job and its pod report it:

- pod Pending -> INITIALIZING; not schedulable -> WAITING_FOR_RESOURCES;
  Running -> RUNNING (and a pod that ended while its Job has not concluded yet);
- Job Complete -> SUCCEEDED; Failed -> FAILED: USER when the flow raised (the
  run process exits 1), SYSTEM otherwise (OOMKilled, evicted, an image that
  cannot be pulled, a Job deleted by someone else).

Abort deletes the Job with its pods (background propagation). Uses the official
``kubernetes`` client's asyncio API (``pip install 'tripwire[k8s]'``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from sensors.core.sensor import slug
from sensors.launchers.attempts import system_error
from sensors.launchers.base import template_values
from sensors.launchers.cluster import ClusterLauncher
from sensors.launchers.process import run_context
from sensors.launchers.remote import Observation
from sensors.launchers.spans import trace_env
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind
from triggers.errors import ConfigurationError
from triggers.outcome import EXIT_USER, TERMINATION_LOG
from triggers.targets import KubernetesTarget, TargetSpec, render

__all__ = ["RUN_LABEL", "KubernetesLauncher"]

RUN_LABEL = "tripwire.io/run"
_STUCK = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError")
_RESULT = "/tmp/result"  # the run process's result file, in the pod
_REPORT = "/dev/termination-log"  # Kubernetes' default terminationMessagePath


class KubernetesLauncher(ClusterLauncher):
    """Runs each attempt as a Job and follows it to its end."""

    family = "k8s"

    def _apis(self) -> tuple[Any, Any, Any]:
        from kubernetes.aio import client

        api = self.api_client()
        return client, client.BatchV1Api(api), client.CoreV1Api(api)

    async def create(self, run: RunRecord, name: str) -> None:
        client, batch, _ = self._apis()
        options = TargetSpec(url=run.target, options=run.target_options or {}).model()
        assert isinstance(options, KubernetesTarget)
        image = options.image or self._settings.kube_image
        if not image:
            raise ConfigurationError(
                f"run {run.name}: no image for {run.target}; give @target(..., image=...) or "
                "set TRIPWIRE_KUBE_IMAGE"
            )
        job = client.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=client.V1ObjectMeta(name=name, labels=self._labels(run, options)),
            spec=client.V1JobSpec(
                backoff_limit=0,  # tripwire retries, as new attempts it can see
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=self._labels(run, options)),
                    spec=client.V1PodSpec(
                        restart_policy="Never",
                        service_account_name=options.service_account,
                        containers=[self._container(client, run, options, image)],
                    ),
                ),
            ),
        )
        try:
            await batch.create_namespaced_job(namespace_of(run), job)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:  # 409: a replay; the Job of this attempt exists
                raise

    def _container(self, client: Any, run: RunRecord, options: KubernetesTarget, image: str) -> Any:
        env = {
            "TRIPWIRE_RUN_CONTEXT_JSON": json.dumps(run_context(run)),
            "TRIPWIRE_PROJECT": run.project,
            "TRIPWIRE_DOMAIN": run.domain,
            "PYTHONUNBUFFERED": "1",
            TERMINATION_LOG: _REPORT,
            **trace_env(run),  # the run joins its attempt's trace
            **render(options.env, template_values(run), typed=False),
        }
        if self._settings.kafka_bootstrap:
            env["TRIPWIRE_KAFKA_BOOTSTRAP"] = self._settings.kafka_bootstrap
        amounts = {"cpu": options.cpu, "memory": options.memory}
        limits = {k: v for k, v in amounts.items() if v is not None}
        if options.gpu:
            limits["nvidia.com/gpu"] = str(options.gpu)
        return client.V1Container(
            name="run",
            image=image,
            command=["python", "-m", "triggers.run"],
            args=["--context-from-env", "TRIPWIRE_RUN_CONTEXT_JSON", "--result", _RESULT],
            # Kubernetes keeps this file in the pod's status: what the run reported about
            # itself (a Metaflow run's pathspec) reaches the launcher from there. It is a
            # file the kubelet mounts, apart from the result file, which is renamed into place.
            termination_message_path=_REPORT,
            env=[client.V1EnvVar(name=k, value=v) for k, v in env.items()],
            resources=client.V1ResourceRequirements(
                requests={k: v for k, v in limits.items() if k != "nvidia.com/gpu"} or None,
                limits=limits or None,
            ),
        )

    @staticmethod
    def _labels(run: RunRecord, options: KubernetesTarget) -> dict[str, str]:
        return {
            **options.labels,
            RUN_LABEL: run.name,
            "tripwire.io/flow": slug(run.flow),
            "tripwire.io/project": run.project,
            "tripwire.io/domain": run.domain,
        }

    async def observe(self, run: RunRecord, name: str) -> Observation:
        client, batch, core = self._apis()
        namespace = namespace_of(run)
        try:
            job = await batch.read_namespaced_job_status(name, namespace)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
            message = f"Job {namespace}/{name} is gone: it was deleted outside tripwire"
            return Observation(
                AttemptPhase.FAILED, system_error("JobMissing", message, self.worker)
            )
        reported = job.status.conditions if job.status else None  # none yet on a new Job
        conditions = {c.type: c for c in reported or [] if c.status == "True"}
        succeeded = "Complete" in conditions or "SuccessCriteriaMet" in conditions
        pods = (await core.list_namespaced_pod(namespace, label_selector=f"job-name={name}")).items
        pod = pods[-1] if pods else None
        if succeeded:
            return Observation(AttemptPhase.SUCCEEDED, outputs=_reported(pod))
        failed = conditions.get("Failed") or conditions.get("FailureTarget")
        if failed is not None:
            return self._why(namespace, name, failed, pod)
        if pod is None or pod.status is None:
            return Observation(AttemptPhase.INITIALIZING)
        for state in pod.status.container_statuses or []:
            waiting = state.state.waiting if state.state else None
            if waiting is not None and waiting.reason in _STUCK:
                message = f"pod {pod.metadata.name}: {waiting.reason}: {waiting.message or ''}"
                return self.failed(waiting.reason, message.strip())
        if pod.status.phase in ("Running", "Succeeded", "Failed"):
            # A pod that ended before its Job concluded (the Job controller is a moment
            # behind, or starts another pod) is still the attempt running, not a new one.
            return Observation(AttemptPhase.RUNNING)
        scheduled = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
        if scheduled and scheduled[0].status == "False" and scheduled[0].reason == "Unschedulable":
            return Observation(AttemptPhase.WAITING_FOR_RESOURCES)
        return Observation(AttemptPhase.INITIALIZING)

    def _why(self, namespace: str, name: str, failed: Any, pod: Any) -> Observation:
        """A failed Job: USER if the flow raised, else SYSTEM."""
        where = f"Job {namespace}/{name}"
        for state in (pod.status.container_statuses or []) if pod and pod.status else []:
            ended = state.state.terminated if state.state else None
            if ended is None:
                continue
            message = f"{where}: container exited {ended.exit_code} ({ended.reason or 'Error'})"
            if ended.exit_code == EXIT_USER and ended.reason != "OOMKilled":
                return self.failed("FlowFailed", message, ErrorKind.USER)
            return self.failed(ended.reason or "ContainerFailed", message)
        message = f"{where} failed: {failed.reason or ''} {failed.message or ''}".strip()
        return self.failed(failed.reason or "JobFailed", message)

    async def stop(self, run: RunRecord, name: str) -> None:
        client, batch, _ = self._apis()
        try:
            await batch.delete_namespaced_job(
                name, namespace_of(run), propagation_policy="Background"
            )
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise


def _reported(pod: Any) -> dict[str, Any] | None:
    """The ``outputs`` of the result file the run wrote, from its container's termination
    message (Kubernetes keeps up to 4 KiB of it); None when there are none."""
    for state in (pod.status.container_statuses or []) if pod and pod.status else []:
        ended = state.state.terminated if state.state else None
        if ended is not None and ended.message:
            try:
                outputs = json.loads(ended.message).get("outputs")
            except (ValueError, AttributeError):
                return None
            return outputs if isinstance(outputs, dict) else None
    return None


def namespace_of(run: RunRecord) -> str:
    return urlsplit(run.target).netloc

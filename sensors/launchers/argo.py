"""``argo://NAMESPACE/TEMPLATE``: each attempt of a run is an Argo Workflow of a template.

The Workflow references the WorkflowTemplate (``workflowTemplateRef``) and passes
the run's parameters as ``arguments.parameters`` (each flow parameter as text
under its name, or the target's ``parameters`` templates). Its name is the
run's, so a replay gets 409. Its ``status.phase`` maps: Pending ->
INITIALIZING, Running -> RUNNING, Succeeded -> SUCCEEDED, Failed -> FAILED
(USER: a step of the workflow failed), Error -> FAILED (SYSTEM). Abort sets
``spec.shutdown: Terminate``, which Argo's controller carries out. A run that
joins a trace gives every container step its ``TRACEPARENT`` and ``TRACESTATE``
(the Workflow's ``templateDefaults``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from sensors.core.sensor import slug
from sensors.launchers.attempts import system_error
from sensors.launchers.base import template_values
from sensors.launchers.cluster import ClusterLauncher
from sensors.launchers.kubernetes import RUN_LABEL
from sensors.launchers.remote import Observation
from sensors.launchers.spans import trace_env
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind
from triggers.targets import ArgoTarget, TargetSpec, render

__all__ = ["ArgoLauncher"]

_GROUP, _VERSION, _PLURAL = "argoproj.io", "v1alpha1", "workflows"


class ArgoLauncher(ClusterLauncher):
    """Submits a Workflow per attempt and follows its phase."""

    family = "argo"

    def _custom(self) -> tuple[Any, Any]:
        from kubernetes.aio import client

        return client, client.CustomObjectsApi(self.api_client())

    async def create(self, run: RunRecord, name: str) -> None:
        client, custom = self._custom()
        options = TargetSpec(url=run.target, options=run.target_options or {}).model()
        assert isinstance(options, ArgoTarget)
        namespace, template = _where(run)
        values = template_values(run)
        if options.parameters is None:
            arguments = {k: _text(v) for k, v in run.parameters.items()}
        else:
            arguments = render(options.parameters, values, typed=False)
        workflow: dict[str, Any] = {
            "apiVersion": f"{_GROUP}/{_VERSION}",
            "kind": "Workflow",
            "metadata": {
                "name": name,
                "labels": {
                    **options.labels,
                    RUN_LABEL: run.name,
                    "tripwire.io/flow": slug(run.flow),
                    "tripwire.io/project": run.project,
                    "tripwire.io/domain": run.domain,
                },
            },
            "spec": {
                "workflowTemplateRef": {"name": template},
                "arguments": {
                    "parameters": [{"name": k, "value": v} for k, v in arguments.items()]
                },
            },
        }
        env = trace_env(run)
        if env:
            # Every container step gets it, merged by name with the template's own env.
            workflow["spec"]["templateDefaults"] = {
                "container": {"env": [{"name": k, "value": v} for k, v in env.items()]}
            }
        try:
            await custom.create_namespaced_custom_object(
                _GROUP, _VERSION, namespace, _PLURAL, workflow
            )
        except client.exceptions.ApiException as exc:
            if exc.status != 409:  # 409: a replay; this attempt's Workflow exists
                raise

    async def observe(self, run: RunRecord, name: str) -> Observation:
        client, custom = self._custom()
        namespace, _ = _where(run)
        try:
            workflow = await custom.get_namespaced_custom_object(
                _GROUP, _VERSION, namespace, _PLURAL, name
            )
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
            message = f"Workflow {namespace}/{name} is gone: it was deleted outside tripwire"
            return self.failed("WorkflowMissing", message)
        status = workflow.get("status") or {}
        phase, message = status.get("phase"), status.get("message") or ""
        where = f"Workflow {namespace}/{name} {phase}: {message}".rstrip(": ")
        if phase == "Succeeded":
            return Observation(AttemptPhase.SUCCEEDED)
        if phase == "Failed":
            shutdown = (workflow.get("spec") or {}).get("shutdown")
            if shutdown:
                return Observation(AttemptPhase.ABORTED)
            return self.failed("WorkflowFailed", where, ErrorKind.USER)
        if phase == "Error":
            return Observation(
                AttemptPhase.FAILED, system_error("WorkflowError", where, self.worker)
            )
        if phase == "Running":
            return Observation(AttemptPhase.RUNNING)
        return Observation(AttemptPhase.INITIALIZING)  # Pending, or not yet seen by Argo

    async def stop(self, run: RunRecord, name: str) -> None:
        client, custom = self._custom()
        namespace, _ = _where(run)
        try:
            await custom.patch_namespaced_custom_object(
                _GROUP, _VERSION, namespace, _PLURAL, name, {"spec": {"shutdown": "Terminate"}}
            )
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise


def _where(run: RunRecord) -> tuple[str, str]:
    parts = urlsplit(run.target)
    return parts.netloc, parts.path.strip("/")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

"""The action of an Argo trigger as the target of a tripwire flow.

- ``argoWorkflow`` (``submit``), or ``k8s`` creating an Argo ``Workflow``:
  ``argo://NS/TEMPLATE`` (:mod:`~sensors.interop.argo_workflows`);
- ``k8s`` creating a ``batch/v1`` Job: ``k8s://NS`` (:mod:`~sensors.interop.argo_jobs`);
- ``http``: ``http(s)://...`` (:mod:`~sensors.interop.argo_http`);
- ``log``: a flow on ``local://`` that prints its events.

A part of an action that would change what runs (secrets, volumes, other kinds of
resources, operations on existing objects) is refused; a setting that changes nothing else
is dropped and reported. The other kinds (awsLambda, kafka, nats, slack...) are refused.
"""

from __future__ import annotations

from typing import Any

from sensors.interop.argo_http import http_target
from sensors.interop.argo_jobs import BODY_NAMES as JOB_BODY_NAMES
from sensors.interop.argo_jobs import job_target
from sensors.interop.argo_params import ParamContext
from sensors.interop.argo_resources import TargetPlan, TargetReader
from sensors.interop.argo_workflows import workflow_target
from sensors.interop.findings import Untranslatable
from sensors.interop.pysource import reserved_names
from triggers.errors import DeclarationError

__all__ = ["BODY_NAMES", "KINDS", "target_of"]

_LOG_BODY = (
    "for event in current.events:",
    '    print(f"{event.dependency}: {event.name} {event.id} {event.payload}")',
)
BODY_NAMES = JOB_BODY_NAMES | reserved_names("\n".join(_LOG_BODY))
"""What the flow bodies of every target read besides their parameters."""
KINDS = (
    "argoWorkflow",
    "k8s",
    "http",
    "log",
    "awsLambda",
    "custom",
    "kafka",
    "nats",
    "slack",
    "openWhisk",
    "azureEventHubs",
    "azureServiceBus",
    "pulsar",
    "email",
)


def target_of(
    template: dict[str, Any],
    trigger: dict[str, Any],
    context: ParamContext,
    *,
    sensor: str,
    namespace: str | None,
) -> TargetPlan:
    """The target plan of one Argo trigger (its ``template`` and the trigger around it).

    Raises:
        Untranslatable: the action has no exact tripwire target.
        DeclarationError: the action is malformed (Argo refuses it too).
    """
    kinds = [k for k in KINDS if template.get(k) is not None]
    if len(kinds) != 1:
        raise DeclarationError(
            f"trigger {context.trigger!r} must have exactly one action ({', '.join(KINDS)}), "
            f"not {kinds or 'none'}."
        )
    kind = kinds[0]
    spec = template[kind]
    reader = TargetReader(context, trigger, sensor=sensor, namespace=namespace)
    where = f"{reader.where}.{kind}"
    if kind == "argoWorkflow":
        reader.only(spec, ("source", "operation", "parameters"), where, "argo:// submits a "
                    "WorkflowTemplate with arguments")  # fmt: skip
        operation = spec.get("operation") or "submit"
        if operation != "submit":
            raise Untranslatable(
                f"{where}.operation {operation}: tripwire starts new runs; it does not "
                f"{operation} existing workflows"
            )
        return workflow_target(reader, reader.resource(spec, where), spec.get("parameters"), where)
    if kind == "k8s":
        reader.only(spec, ("source", "operation", "parameters"), where, "tripwire creates objects")
        operation = spec.get("operation") or "create"
        if operation != "create":
            raise Untranslatable(f"{where}.operation {operation}: tripwire only creates objects")
        resource = reader.resource(spec, where)
        made = (resource.get("apiVersion"), resource.get("kind"))
        if made == ("argoproj.io/v1alpha1", "Workflow"):
            return workflow_target(reader, resource, spec.get("parameters"), where)
        if made == ("batch/v1", "Job"):
            return job_target(reader, resource, spec.get("parameters"), where)
        raise Untranslatable(
            f"{where} creates a {made[1]} ({made[0]}); tripwire runs flows as Jobs (k8s://) "
            "or Workflows of a WorkflowTemplate (argo://)"
        )
    if kind == "http":
        return http_target(reader, spec, where)
    if kind == "log":
        if isinstance(spec, dict) and spec.get("intervalSeconds"):
            reader.note("dropped", f"{where}.intervalSeconds", "every run prints its events")
        return TargetPlan(url=None, imports={"current"}, body=list(_LOG_BODY))
    raise Untranslatable(
        f"{kind} triggers have no tripwire target (local://, command://, http(s)://, k8s://, "
        "argo://); write the flow by hand, e.g. with a command:// or http(s):// target"
    )

"""An Argo Workflow that a trigger submits, as an ``argo://NS/TEMPLATE`` target.

tripwire submits Workflows that reference a WorkflowTemplate (``workflowTemplateRef``), with
arguments and labels. A Workflow written inline is refused, with the fix: apply its spec
as a WorkflowTemplate and reference it. Each argument becomes one of the target's
``parameters``: its value as literal text, or the flow parameter an Argo parameter puts
there (``dest: spec.arguments.parameters.N.value``).
"""

from __future__ import annotations

import re
from typing import Any

from sensors.interop.argo_params import bind, escape
from sensors.interop.argo_resources import NAMES, TargetPlan, TargetReader, text
from sensors.interop.findings import Untranslatable
from triggers.errors import DeclarationError

__all__ = ["workflow_target"]

_ARGUMENT = re.compile(r"spec\.arguments\.parameters\.(\d+)\.value")


def workflow_target(
    reader: TargetReader, resource: dict[str, Any], parameters: object, where: str
) -> TargetPlan:
    """The ``argo://`` target of a Workflow ``resource`` and the parameters bound into it.

    Raises:
        Untranslatable: the Workflow is inline, cluster-scoped, or sets more than arguments.
    """
    metadata = reader.metadata(resource, where, "argo://")
    spec = reader.only(
        resource.get("spec") or {},
        ("workflowTemplateRef", "arguments"),
        f"{where}.spec",
        "argo:// submits a WorkflowTemplate with arguments: move the rest into the template",
    )
    reference = spec.get("workflowTemplateRef")
    if not isinstance(reference, dict) or not reference.get("name"):
        raise Untranslatable(
            f"{where} writes its Workflow inline; argo:// submits a WorkflowTemplate: apply one "
            "with this spec and name it in spec.workflowTemplateRef.name"
        )
    if reference.get("clusterScope"):
        raise Untranslatable(
            f"{where} uses a ClusterWorkflowTemplate; argo:// submits a namespace's templates"
        )
    arguments = reader.only(
        spec.get("arguments") or {},
        ("parameters",),
        f"{where}.spec.arguments",
        "argo:// passes parameters only",
    )
    declared = arguments.get("parameters") or []
    if not isinstance(declared, list):
        raise DeclarationError(
            f"{where}.spec.arguments.parameters must be a list of {{name, value}}, not "
            f"{declared!r}."
        )
    for n, item in enumerate(declared):
        here = f"{where}.spec.arguments.parameters[{n}]"
        reader.only(item, ("name", "value"), here, "argo:// passes literal values")
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise DeclarationError(f"{here} needs a name; Argo refuses an argument without one.")
    # In the Workflow's order; an argument without a value that no parameter sets is left
    # out, so the WorkflowTemplate's default applies, as when Argo submits it.
    values: dict[str, str | None] = {
        str(a["name"]): escape(text(a["value"])) if "value" in a else None for a in declared
    }
    plan = TargetPlan(url=f"argo://{reader.namespace_of(metadata, where)}/{reference['name']}")
    for dest, here, source in reader.sources(parameters, f"{where}.parameters"):
        if dest in NAMES:
            reader.note("dropped", here, "tripwire names the Workflow after the run")
            continue
        match = _ARGUMENT.fullmatch(dest)
        if match is None or int(match.group(1)) >= len(declared):
            raise Untranslatable(f"{here}.dest {dest!r} is not the value of an argument")
        argument = declared[int(match.group(1))]
        current = text(argument["value"]) if "value" in argument else None
        name = str(argument["name"])
        binding = bind(source, reader.context, current, annotation="Any", where=here, name=name)
        values[name] = binding.template()
        plan.add(binding)
    given = {name: value for name, value in values.items() if value is not None}
    labels = reader.labels({f"{where}.metadata.labels": metadata.get("labels")})
    plan.options = {"parameters": given, "labels": labels}
    return plan

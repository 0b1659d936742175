"""A Kubernetes Job that a trigger creates, as a ``k8s://NS`` target.

tripwire's Job runs the flow in the target's image (``python -m triggers.run``), so the
flow runs the container's command and args as a process, with the parameters Argo would
put in them; the image must hold Python, tripwire and the flow file. The Job's image,
env, cpu, memory, GPUs, service account and labels carry over; ``backoffLimit`` (6 by
default) becomes ``retries`` and ``activeDeadlineSeconds`` the ``timeout``. A Job that
needs more (volumes, secrets, several containers, the image's own entrypoint) is refused.
"""

from __future__ import annotations

import re
from typing import Any

from sensors.interop.argo_params import Binding, bind, escape
from sensors.interop.argo_resources import NAMES, TargetPlan, TargetReader, mapping, text
from sensors.interop.findings import Untranslatable
from sensors.interop.pysource import literal, reserved_names
from triggers.errors import DeclarationError

__all__ = ["BODY_NAMES", "job_target"]

_ITEM = re.compile(r"spec\.template\.spec\.containers\.0\.(command|args)\.(\d+)")
_ENV = re.compile(r"spec\.template\.spec\.containers\.0\.env\.(\d+)\.value")
_BACKOFF_LIMIT = 6  # Kubernetes' default for a Job
# The flow body runs the container's argv: subprocess.run([item, _text(parameter)...]).
_RUN = "subprocess.run"
_TEXT = "_text({})"  # a parameter as text (the helper of flowfile)
_CONTAINER_KEYS = (
    "name",
    "image",
    "command",
    "args",
    "env",
    "resources",
    "imagePullPolicy",
    "workingDir",
)


def job_target(
    reader: TargetReader, resource: dict[str, Any], parameters: object, where: str
) -> TargetPlan:
    """The ``k8s://`` target of a Job ``resource``, and the flow body that runs its command.

    Raises:
        Untranslatable: the Job needs what a tripwire pod does not have.
    """
    metadata = reader.metadata(resource, where, "k8s://")
    spec = reader.only(
        resource.get("spec") or {},
        ("template", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"),
        f"{where}.spec",
        "tripwire's Job runs one container",
    )
    template = reader.only(
        spec.get("template") or {}, ("metadata", "spec"), f"{where}.spec.template", "labels only"
    )
    pod = reader.only(
        template.get("spec") or {},
        ("containers", "restartPolicy", "serviceAccountName"),
        f"{where}.spec.template.spec",
        "tripwire's pod has one container and a service account, no volumes",
    )
    containers = pod.get("containers")
    if not isinstance(containers, list):
        raise DeclarationError(f"{where}.spec.template.spec.containers must be a list.")
    if len(containers) != 1:
        raise Untranslatable(f"{where} runs {len(containers)} containers; k8s:// runs one")
    here = f"{where}.spec.template.spec.containers[0]"
    container = reader.only(
        containers[0], _CONTAINER_KEYS, here, "k8s:// sets the image, command, env and resources"
    )
    command = _strings(container.get("command"), f"{here}.command")
    argv = command + _strings(container.get("args"), f"{here}.args")
    if not command or not container.get("image"):
        raise Untranslatable(
            f"{here} needs an image and a command: tripwire runs the flow in the image, so the "
            "flow must name what to run"
        )
    if any("$(" in item for item in argv):
        raise Untranslatable(f"{here} uses $(VAR), which Kubernetes expands in command and args")
    env = _env(reader, container.get("env") or [], f"{here}.env")
    if container.get("imagePullPolicy"):
        reader.note("dropped", f"{here}.imagePullPolicy", "Kubernetes' default applies")
    if spec.get("ttlSecondsAfterFinished") is not None:
        reader.note("dropped", f"{where}.spec.ttlSecondsAfterFinished", "tripwire keeps Jobs")
    plan = TargetPlan(url=f"k8s://{reader.namespace_of(metadata, where)}", imports={"subprocess"})
    items = [literal(item) for item in argv]
    for dest, place, source in reader.sources(parameters, f"{where}.parameters"):
        if dest in NAMES:
            reader.note("dropped", place, "tripwire names the Job after the run")
            continue
        item, variable = _ITEM.fullmatch(dest), _ENV.fullmatch(dest)
        if item:
            n = int(item.group(2)) + (len(command) if item.group(1) == "args" else 0)
            if n >= (len(command) if item.group(1) == "command" else len(argv)):
                raise Untranslatable(f"{place}.dest {dest!r} is past the end of its list")
            binding = bind(source, reader.context, argv[n], annotation="Any", where=place)
            items[n] = _python(binding)
            plan.imports.add("json")
        elif variable and int(variable.group(1)) < len(env):
            n = int(variable.group(1))
            current, name = container["env"][n].get("value"), list(env)[n]
            binding = bind(
                source, reader.context, current, annotation="Any", where=place, name=name.lower()
            )
            env[name] = binding.template()
        else:
            raise Untranslatable(
                f"{place}.dest {dest!r} is not an item of the command or args, or an env value"
            )
        plan.add(binding)
    keywords = ["check=True"]
    if container.get("workingDir"):
        keywords.append(f"cwd={literal(str(container['workingDir']))}")
    plan.body = _call(_RUN, f"[{', '.join(items)}]", items, keywords)
    plan.options = {"image": str(container["image"])}
    plan.options |= _resources(container.get("resources"), f"{here}.resources")
    if env:
        plan.options["env"] = env
    if pod.get("serviceAccountName"):
        plan.options["service_account"] = str(pod["serviceAccountName"])
    pod_metadata = mapping(template.get("metadata"), f"{where}.spec.template.metadata")
    plan.options["labels"] = reader.labels(
        {
            f"{where}.metadata.labels": metadata.get("labels"),
            f"{where}.spec.template.metadata.labels": pod_metadata.get("labels"),
        }
    )
    limit = spec.get("backoffLimit", _BACKOFF_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 100:
        raise Untranslatable(f"{where}.spec.backoffLimit {limit!r} is not 0 to 100 retries")
    plan.policy["retries"] = limit
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int) or deadline < 0:
            raise DeclarationError(
                f"{where}.spec.activeDeadlineSeconds is {deadline!r}; Kubernetes takes a "
                "whole number of seconds (activeDeadlineSeconds: 600)."
            )
        if deadline == 0:
            raise Untranslatable(
                f"{where}.spec.activeDeadlineSeconds 0 ends the Job as it starts; a tripwire "
                "timeout is longer"
            )
        plan.policy["timeout"] = f"{deadline}s"
    reader.note(
        "differs",
        where,
        "k8s:// runs this flow in the Job's image, so the image needs Python with tripwire "
        "and this file; the flow runs the container's command, and is retried "
        f"{limit} time(s) when the command fails (the Job's backoffLimit)",
    )
    return plan


def _env(reader: TargetReader, raw: object, where: str) -> dict[str, str]:
    if not isinstance(raw, list):
        raise DeclarationError(f"{where} must be a list.")
    env: dict[str, str] = {}
    for n, item in enumerate(raw):
        reader.only(
            item,
            ("name", "value"),
            f"{where}[{n}]",
            "values from secrets or config maps are not carried over",
        )
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise DeclarationError(f"{where}[{n}] needs a name; Kubernetes refuses it.")
        env[item["name"]] = escape(text(item.get("value") or ""))
    return env


def _resources(raw: object, where: str) -> dict[str, Any]:
    raw = mapping(raw, where)
    limits = mapping(raw.get("limits"), f"{where}.limits")
    requests = mapping(raw.get("requests"), f"{where}.requests")
    known = {"cpu", "memory", "nvidia.com/gpu"}
    if set(raw) - {"limits", "requests"} or (set(limits) | set(requests)) - known:
        raise Untranslatable(f"{where} asks for more than cpu, memory and nvidia.com/gpu")
    if any(limits.get(k) != v for k, v in requests.items()):
        raise Untranslatable(
            f"{where}: tripwire sets a container's requests equal to its limits, and these differ"
        )
    options: dict[str, Any] = {k: str(limits[k]) for k in ("cpu", "memory") if k in limits}
    if "nvidia.com/gpu" in limits:
        gpus = limits["nvidia.com/gpu"]
        if isinstance(gpus, str) and gpus.isdecimal() and gpus.isascii():
            gpus = int(gpus)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise DeclarationError(
                f"{where}.limits.nvidia.com/gpu is {gpus!r}; Kubernetes takes a whole number "
                'of GPUs (nvidia.com/gpu: "1").'
            )
        options["gpu"] = gpus
    return options


def _python(binding: Binding) -> str:
    """A Python expression of the text a binding puts in an argv item."""
    if binding.param is None:
        return literal(binding.literal)
    parts = [literal(binding.before)] if binding.before else []
    parts.append(_TEXT.format(binding.param.name))
    parts += [literal(binding.after)] if binding.after else []
    return " + ".join(parts)


def _call(function: str, argv: str, items: list[str], keywords: list[str]) -> list[str]:
    """The lines of ``function(argv, keywords...)``, laid out as ruff lays them out."""
    one = f"{function}({', '.join([argv, *keywords])})"
    if len(one) <= 96:  # the body is indented by 4, lines are 100
        return [one]
    return [
        f"{function}(",
        "    [",
        *(f"        {item}," for item in items),
        "    ],",
        *(f"    {keyword}," for keyword in keywords),
        ")",
    ]


BODY_NAMES = reserved_names("\n".join(_call(_RUN, f"[{_TEXT.format('None')}]", [], ["check=True"])))
"""What a Job's flow body reads besides its parameters."""


def _strings(raw: object, where: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise DeclarationError(f"{where} must be a list of strings.")
    return list(raw)

"""Where a flow's runs execute, and what they need there: ``@target`` and ``@resources``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar

from triggers.declarations import declaration_of, placement_of
from triggers.errors import DeclarationError
from triggers.locations import at_caller, flow_subject
from triggers.targets import parse_target

__all__ = ["resources", "target"]

F = TypeVar("F", bound=Callable[..., Any])


def target(url: str, **options: Any) -> Callable[[F], F]:
    """Run the decorated flow on ``url`` instead of a local Python process.

    ``command://`` runs an argv (``argv=["python", "flow.py", "run", "--day", "{day}"]``)
    with no shell; ``http(s)://...`` POSTs a JSON body (``body=``, ``success=``,
    ``retries=``, ``backoff=``, ``timeout=``, ``hmac_secret_env=``). Templates take
    the flow's parameters and ``run_name``, ``project``, ``domain``, ``flow``,
    ``parameters``, ``events`` as ``{placeholders}``, substituted as data.
    See :mod:`triggers.targets`. On a Metaflow ``FlowSpec`` class it places the class's
    runs (``python flow.py run``) the same way; its options are checked when it is deployed.

    Raises:
        DeclarationError: an unknown scheme, a bad option or an unknown placeholder,
            located at the decorator.
    """

    def decorate(func: F) -> F:
        with at_caller(flow_subject(func)):
            if inspect.isclass(func):
                placement = placement_of(func)
                if placement.url is not None:
                    raise DeclarationError("the flow has a target already; keep one @target.")
                placement.url, placement.options = url, options
                return func
            decl = declaration_of(func, "@target")
            if decl.target is not None:
                raise DeclarationError("the flow has a target already; keep one @target.")
            decl.target = parse_target(url, options, [p.name for p in decl.parameters])
        return func

    return decorate


def resources(
    *, cpu: float | str | None = None, memory: int | str | None = None, gpu: int | None = None
) -> Callable[[F], F]:
    """What a run of the decorated flow needs, as Metaflow's ``@resources`` says it.

    Applies to ``k8s://`` targets (requests and limits of the Job's pod; the target's
    own ``cpu``/``memory``/``gpu`` win); other targets ignore it.

    Args:
        cpu: cores (``2``, ``0.5``) or a Kubernetes quantity (``"500m"``).
        memory: megabytes (``4096``, as Metaflow) or a quantity (``"4Gi"``).
        gpu: whole GPUs.

    Raises:
        DeclarationError: a value that is not a number or a quantity, located at the
            decorator.
    """

    def decorate(func: F) -> F:
        with at_caller(flow_subject(func)):
            given: dict[str, Any] = {}
            if cpu is not None:
                given["cpu"] = _quantity(cpu, "cpu", "")
            if memory is not None:
                given["memory"] = _quantity(memory, "memory", "Mi")
            if gpu is not None:
                if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 1:
                    raise DeclarationError(f"gpu={gpu!r} must be a whole number ≥ 1.")
                given["gpu"] = gpu
            if inspect.isclass(func):
                placement_of(func).resources = given
            else:
                declaration_of(func, "@resources").resources = given
        return func

    return decorate


_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


def _quantity(value: object, what: str, unit: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return f"{value:g}{unit}"
    if isinstance(value, str) and _QUANTITY.match(value):
        return value
    raise DeclarationError(
        f"{what}={value!r} must be a number or a Kubernetes quantity like "
        f"{'500m' if what == 'cpu' else '4Gi'}."
    )

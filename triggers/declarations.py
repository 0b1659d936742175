"""What a flow's decorators record on its function, and the :class:`FlowSpec` it becomes.

Every decorator adds to one :class:`Declaration` kept on the function: triggers,
a target, resources. :func:`flow_spec` turns it into the spec the engine
deploys. What all kinds of trigger share is checked here too: the run policy,
the trigger's name and its own target.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from triggers.errors import DeclarationError
from triggers.params import ParamSpec
from triggers.spec import Entrypoint, FlowSpec, RateLimit, TriggerSpec, parse_duration
from triggers.targets import TargetSpec, parse_target

__all__ = [
    "Declaration",
    "Placement",
    "add_trigger",
    "class_target",
    "declaration_of",
    "first_error",
    "flow_spec",
    "is_flow",
    "placement_of",
    "run_policy",
]

_ATTR = "__tripwire_flow__"
_PLACEMENT = "__tripwire_placement__"


@dataclass
class Declaration:
    """What the decorators of one flow function declared so far."""

    parameters: tuple[ParamSpec, ...]
    triggers: list[TriggerSpec] = field(default_factory=list)
    target: TargetSpec | None = None
    resources: dict[str, Any] = field(default_factory=dict)


def declaration_of(func: Any, where: str) -> Declaration:
    """The declaration kept on ``func``, made on the first decorator applied."""
    if not inspect.isfunction(func):
        raise DeclarationError(f"{where}: only plain functions can be flows, not {func!r}.")
    decl = getattr(func, _ATTR, None)
    if decl is None:
        decl = Declaration(parameters=ParamSpec.of(func))
        setattr(func, _ATTR, decl)
    return decl


@dataclass
class Placement:
    """``@target`` and ``@resources`` on a flow class (a Metaflow ``FlowSpec``), whose
    triggers its own decorators declare: kept as given, and checked against the flow's
    parameters when it is deployed (:func:`class_target`)."""

    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)


def placement_of(cls: type) -> Placement:
    """The placement kept on flow class ``cls``, made on the first decorator applied."""
    placement = cls.__dict__.get(_PLACEMENT)
    if not isinstance(placement, Placement):
        placement = Placement()
        setattr(cls, _PLACEMENT, placement)
    return placement


def class_target(cls: type, parameters: list[str]) -> tuple[str, dict[str, Any]]:
    """Where the runs of flow class ``cls`` execute: its ``@target`` (``local://`` without
    one), validated against its ``parameters``, with its ``@resources`` for ``k8s://``.

    Raises:
        DeclarationError: an unknown scheme, a bad option or an unknown placeholder.
    """
    placement = cls.__dict__.get(_PLACEMENT) or Placement()
    if placement.url is None:
        return TargetSpec().url, _sized(TargetSpec().url, {}, placement.resources)
    target = parse_target(placement.url, placement.options, parameters)
    return target.url, _sized(target.url, target.options, placement.resources)


def add_trigger(
    decl: Declaration,
    name: str | None,
    *,
    base: str = "trigger",
    target: str | dict[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Add a trigger named ``name`` (default ``base``, ``base_2``...) to the flow."""
    trigger_name = name or _next_trigger_name(decl, base)
    if any(t.name == trigger_name for t in decl.triggers):
        raise DeclarationError(
            f"the flow has a trigger named {trigger_name!r} already; give this one another name=..."
        )
    if target is not None:
        options = dict(target) if isinstance(target, dict) else {"url": target}
        url = options.pop("url", "")
        spec_target = parse_target(str(url), options, [p.name for p in decl.parameters])
        fields |= {"target": spec_target.url, "target_options": spec_target.options}
    try:
        spec = TriggerSpec(name=trigger_name, **fields)
    except ValidationError as exc:
        raise DeclarationError(f"{first_error(exc)}.") from None
    # Decorators apply bottom-up; insert first so specs follow source order.
    decl.triggers.insert(0, spec)


def _next_trigger_name(decl: Declaration, base: str = "trigger") -> str:
    taken = {t.name for t in decl.triggers}
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def run_policy(
    retries: object,
    retry_backoff: object,
    timeout: object,
    rate_limit: object,
    max_concurrency: object,
    debounce: object = None,
) -> dict[str, Any]:
    """Validated retries, backoff, timeout, limits and debounce of a trigger, as TriggerSpec
    fields."""
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise DeclarationError(f"retries={retries!r} must be a whole number from 0 to 100.")
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise DeclarationError(f"max_concurrency={max_concurrency!r} must be a whole number ≥ 1.")
    return {
        "retries": retries,
        "retry_backoff": parse_duration(retry_backoff, what="retry_backoff"),
        "timeout": parse_duration(timeout, what="timeout") if timeout is not None else None,
        "debounce": parse_duration(debounce, what="debounce") if debounce is not None else None,
        "rate_limit": RateLimit.parse(rate_limit) if rate_limit is not None else None,
        "max_concurrency": max_concurrency,
    }


def first_error(exc: ValidationError) -> str:
    """The first thing pydantic found wrong, as a message says it."""
    return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")


def _sized(url: str, options: dict[str, Any], sizes: dict[str, Any]) -> dict[str, Any]:
    """A target's options with the flow's @resources, for k8s:// (its own values win)."""
    return {**sizes, **options} if sizes and url.startswith("k8s://") else options


def is_flow(obj: object) -> bool:
    """True for a function that carries tripwire declarations."""
    return inspect.isfunction(obj) and isinstance(getattr(obj, _ATTR, None), Declaration)


def flow_spec(func: Callable[..., Any], *, path: str | Path | None = None) -> FlowSpec:
    """The deployable spec of a decorated function.

    ``path`` is the file the function was loaded from; the run process loads it
    from there. Without it, the function's module must be importable by name.
    """
    decl = getattr(func, _ATTR, None)
    if not isinstance(decl, Declaration):
        raise DeclarationError(f"{func!r} is not a flow: decorate it with @trigger first.")
    if path is not None:
        entrypoint = Entrypoint(function=func.__name__, path=str(Path(path).resolve()))
    elif func.__module__ != "__main__":
        entrypoint = Entrypoint(function=func.__name__, module=func.__module__)
    else:
        source = inspect.getsourcefile(func)
        entrypoint = Entrypoint(function=func.__name__, path=str(Path(source or "").resolve()))
    target = decl.target or TargetSpec()
    options = _sized(target.url, target.options, decl.resources)
    triggers = [
        t.model_copy(update={"target_options": _sized(t.target, t.target_options, decl.resources)})
        if t.target
        else t
        for t in decl.triggers
    ]
    return FlowSpec(
        name=func.__name__,
        entrypoint=entrypoint,
        parameters=decl.parameters,
        triggers=tuple(triggers),
        target=target.url,
        target_options=options,
    )

"""The decorators flow authors use: ``@trigger``, ``@trigger_on_finish`` and ``@schedule``.

A decorator validates its arguments at once, records a :class:`TriggerSpec` on
the function, and returns the function unchanged, so a flow still runs as
plain Python. :func:`flow_spec` turns a decorated function into the
:class:`FlowSpec` the engine deploys.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from triggers.conditions import parse_condition
from triggers.errors import DeclarationError
from triggers.filters import Filter
from triggers.normalize import normalize_correlation, normalize_dependencies
from triggers.params import ParamSpec
from triggers.spec import (
    CATCHUP,
    DEFAULT_RETRY_BACKOFF,
    DEFAULT_WINDOW,
    FINAL_PHASES,
    SCHEDULE_TIME,
    SCHEDULED_AT,
    AbsenceSpec,
    Entrypoint,
    EventDependency,
    FlowSpec,
    RateLimit,
    ScheduleSpec,
    TriggerSpec,
    finished_event,
    parse_duration,
)
from triggers.targets import TargetSpec, parse_target

__all__ = [
    "flow_spec",
    "is_flow",
    "resources",
    "schedule",
    "target",
    "trigger",
    "trigger_on_finish",
]

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__tripwire_flow__"


@dataclass
class _Declaration:
    parameters: tuple[ParamSpec, ...]
    triggers: list[TriggerSpec] = field(default_factory=list)
    target: TargetSpec | None = None
    resources: dict[str, Any] = field(default_factory=dict)


def trigger(
    event: str | dict[str, Any] | None = None,
    *,
    events: list[str | dict[str, Any]] | None = None,
    sequence: list[str | dict[str, Any]] | None = None,
    absent: str | dict[str, Any] | None = None,
    after: str | dict[str, Any] | None = None,
    within: str | float | timedelta | None = None,
    threshold: int | None = None,
    tz: str | None = None,
    debounce: str | float | timedelta | None = None,
    conditions: str | None = None,
    correlate_by: str | dict[str, str] | None = None,
    name: str | None = None,
    retries: int = 0,
    retry_backoff: str | float | timedelta = DEFAULT_RETRY_BACKOFF,
    timeout: str | float | timedelta | None = None,
    rate_limit: str | None = None,
    max_concurrency: int | None = None,
    target: str | dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Launch the decorated flow when events arrive, in one of four ways.

    Exactly one of ``event``, ``events``, ``sequence`` and ``absent`` says what it
    waits for. An event name ending in ``*`` (``"orders.*"``) matches every name
    with that prefix.

    Args:
        event: one event: its name, or ``{"name": ..., "parameters": {...}}``.
        events: several events, each a name or a dict; all must arrive within ``within``.
        sequence: several events that must happen in this order (by event time)
            within ``within``; an event that breaks the order restarts the sequence.
        absent: fire when this event does *not* happen: once per window of ``within``
            (aligned on the wall clock of ``tz``, so "24h" is a calendar day) in which
            none arrived; or, with ``after``, when none followed an ``after`` event
            within ``within``. ``within`` must be given, and be at least 10 s.
        after: with ``absent``, the event that opens each window.
        within: the window ("90s", "15m", "1h", "2d" or a timedelta); default one
            hour. Measured on event time (arrival time when an event has none).
        threshold: fire when at least this many matching events (distinct ids) arrive
            within ``within``, then count again; per key with ``correlate_by``.
            Parameters come from the event that reached the count.
        tz: with ``absent``: the IANA time zone windows are aligned in (default UTC).
        debounce: coalesce the fires of one key into one run, launched once no new
            fire came for this long ("30s"); the run records the coalesced event ids.
        conditions: which dependencies must be satisfied, in Argo Events syntax over
            dependency names, e.g. "orders && (payments || refunds)"; default all of them.
        correlate_by: a JSONPath ("$.date") whose value must be equal across the events
            that fire together, or a dict giving one per dependency.
        name: trigger name, unique within the flow (default "trigger", "trigger_2", ...).
        retries: how often a run whose flow raised is retried, each time as a new attempt.
        retry_backoff: the wait before the first retry (default "10s"), doubled for each next.
        timeout: a run still going this long after it started ends TIMED_OUT, and its
            process is killed ("30m"); default none.
        rate_limit: at most this many runs start per period ("10/m", "100/h", "2/30s");
            runs over it wait in QUEUED, none is dropped.
        max_concurrency: at most this many runs of the trigger at once; others wait in QUEUED.
        target: where this trigger's runs execute, if not where the flow's do: a URL
            ("k8s://gpu"), or a dict with "url" and the options of :func:`target`.

    Payload fields whose names equal parameter names fill them, unless an event gives
    an explicit ``parameters`` mapping of ``param -> field`` (a value starting with ``$``
    is a JSONPath over the payload).

    Raises:
        DeclarationError: when the declaration is invalid; the message says what to write.
    """
    if callable(event) and not isinstance(event, str | dict):
        raise DeclarationError(
            f"@trigger on {getattr(event, '__qualname__', event)!r} needs an event: write "
            "@trigger(event='data_updated') or @trigger(events=[...], within='1h')."
        )
    waits = {"event": event, "events": events, "sequence": sequence, "absent": absent}
    given = [k for k, v in waits.items() if v is not None]
    if len(given) != 1:
        raise DeclarationError(
            "@trigger takes exactly one of event='name', events=[...], sequence=[...] and "
            f"absent='name'{f', not {given}' if given else ''}."
        )
    if (after is not None or tz is not None) and absent is None:
        raise DeclarationError("@trigger: after= and tz= go with absent='event_name'.")
    if absent is not None and within is None:
        raise DeclarationError(
            "@trigger: absent= needs within=..., the window in which the event is expected, "
            "e.g. within='24h'."
        )
    window = parse_duration(within) if within is not None else DEFAULT_WINDOW
    policy = _run_policy(retries, retry_backoff, timeout, rate_limit, max_concurrency, debounce)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise DeclarationError(f"@trigger: threshold={threshold!r} must be a whole number ≥ 1.")
        policy["threshold"] = threshold

    def decorate(func: F) -> F:
        where = f"@trigger on {getattr(func, '__qualname__', func)!r}"
        decl = _declaration_of(func, where)
        params = [p.name for p in decl.parameters]
        fields: dict[str, Any] = {}
        if absent is not None:
            deps = normalize_dependencies(absent, None, parameter_names=params, where=where)
            if after is not None:
                deps = (
                    *normalize_dependencies(after, None, parameter_names=params, where=where),
                    *deps,
                )
                if deps[0].dep == deps[1].dep:
                    raise DeclarationError(
                        f"{where}: after= and absent= are both {deps[0].dep!r}; give one "
                        "of them another name with {'name': ..., 'dep': 'other_name'}."
                    )
            missing = [p.name for p in decl.parameters if p.required]
            if after is None and missing:
                raise DeclarationError(
                    f"{where}: parameters {missing} have no default, and an absence has no "
                    "event to fill them; give them defaults, or use after=... to map them "
                    "from the event that opens the window."
                )
            fields["absence"] = AbsenceSpec(
                dep=deps[-1].dep, after=deps[0].dep if after else None, tz=tz or "UTC"
            )
        else:
            deps = normalize_dependencies(
                event, events or sequence, parameter_names=params, where=where
            )
            fields["sequence"] = sequence is not None
        if conditions is not None:
            if not isinstance(conditions, str):
                raise DeclarationError(f"{where}: conditions must be a string like 'a && b'.")
            parse_condition(conditions, [d.dep for d in deps], where=where)
        _add_trigger(
            decl,
            where,
            name,
            dependencies=deps,
            within=window,
            conditions=conditions,
            correlate_by=normalize_correlation(correlate_by, deps, where=where),
            target=target,
            **fields,
            **policy,
        )
        return func

    return decorate


def trigger_on_finish(
    flow: str | None = None,
    *,
    flows: list[str] | None = None,
    on: list[str] | tuple[str, ...] = ("SUCCEEDED",),
    within: str | float | timedelta | None = None,
    debounce: str | float | timedelta | None = None,
    name: str | None = None,
    retries: int = 0,
    retry_backoff: str | float | timedelta = DEFAULT_RETRY_BACKOFF,
    timeout: str | float | timedelta | None = None,
    rate_limit: str | None = None,
    max_concurrency: int | None = None,
    target: str | dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Launch the decorated flow when a run of another flow finishes.

    Args:
        flow: the upstream flow's name; or ``flows``, several, all of which must
            finish within ``within`` (default one hour).
        on: the final phases that count (default SUCCEEDED only); e.g.
            ``["FAILED", "TIMED_OUT"]`` for a failure hook.
        debounce, name, retries, retry_backoff, timeout, rate_limit, max_concurrency,
            target: as for :func:`trigger`.

    Inside the run, ``current.run`` is the upstream run (``current.runs`` all of them).
    Payload fields do not fill parameters: the flow gets its defaults. Cycles (a on
    b on a) are refused when the flows are deployed.

    Raises:
        DeclarationError: when the declaration is invalid; the message says what to write.
    """
    if callable(flow) and not isinstance(flow, str):
        raise DeclarationError(
            f"@trigger_on_finish on {getattr(flow, '__qualname__', flow)!r} needs the upstream "
            "flow: write @trigger_on_finish(flow='upstream_flow')."
        )
    if (flow is None) == (flows is None):
        raise DeclarationError(
            "@trigger_on_finish takes flow='name' or flows=['a', 'b'], exactly one of them."
        )
    upstream = [flow] if flow is not None else list(flows or [])
    if not upstream or not all(isinstance(f, str) and f.isidentifier() for f in upstream):
        raise DeclarationError(
            f"@trigger_on_finish: upstream flows must be flow names, not {upstream!r}."
        )
    phases = [on] if isinstance(on, str) else list(on)
    bad = [p for p in phases if p not in FINAL_PHASES]
    if bad or not phases:
        raise DeclarationError(
            f"@trigger_on_finish: on={phases!r} must name final phases: {', '.join(FINAL_PHASES)}."
        )
    window = parse_duration(within) if within is not None else DEFAULT_WINDOW
    policy = _run_policy(retries, retry_backoff, timeout, rate_limit, max_concurrency, debounce)
    deps = tuple(
        EventDependency(
            name=finished_event(up),
            dep=up,
            parameters={},  # a lifecycle event's fields are not the flow's parameters
            filters=(Filter(path="$.phase", op="in", value=phases),),
        )
        for up in dict.fromkeys(upstream)
    )

    def decorate(func: F) -> F:
        where = f"@trigger_on_finish on {getattr(func, '__qualname__', func)!r}"
        decl = _declaration_of(func, where)
        _add_trigger(decl, where, name, dependencies=deps, within=window, target=target, **policy)
        return func

    return decorate


def schedule(
    cron: str | None = None,
    *,
    rate: str | float | timedelta | None = None,
    tz: str = "UTC",
    catchup: Literal["latest", "all", "none"] = "latest",
    max_catchup: int = 100,
    parameters: dict[str, str] | None = None,
    name: str | None = None,
    retries: int = 0,
    retry_backoff: str | float | timedelta = DEFAULT_RETRY_BACKOFF,
    timeout: str | float | timedelta | None = None,
    rate_limit: str | None = None,
    max_concurrency: int | None = None,
    target: str | dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Launch the decorated flow on a clock: a cron expression or a fixed rate.

    Each tick launches one run, named from the flow, the trigger, its revision and
    the tick, so a tick never runs twice, whichever worker or restart sees it.

    Args:
        cron: five-field cron ("0 0 * * *") or @hourly, @daily, @weekly, @monthly.
        rate: instead of cron, a tick every "5m", "1h", ... (multiples of the rate
            since the Unix epoch).
        tz: the IANA time zone cron is read in (default UTC).
        catchup: ticks missed while no worker ran: "latest" (default) runs the most
            recent one, "all" runs each (oldest first, at most ``max_catchup``),
            "none" skips them.
        parameters: flow parameters that get the tick, as ``{"param": "$schedule.time"}``.
            A parameter named ``scheduled_at`` gets it without being named here.
        name, retries, retry_backoff, timeout, rate_limit, max_concurrency, target: as
            for :func:`trigger`
            (default name "schedule").

    Raises:
        DeclarationError: when the declaration is invalid; the message says what to write.
    """
    if callable(cron) and not isinstance(cron, str):
        raise DeclarationError(
            f"@schedule on {getattr(cron, '__qualname__', cron)!r} needs a clock: write "
            "@schedule(cron='0 0 * * *') or @schedule(rate='5m')."
        )
    if catchup not in CATCHUP:
        raise DeclarationError(
            f"@schedule: catchup={catchup!r} must be one of {', '.join(map(repr, CATCHUP))}."
        )
    fields: dict[str, Any] = {"cron": cron, "tz": tz, "catchup": catchup}
    fields |= {"max_catchup": max_catchup, "parameters": dict(parameters or {})}
    if rate is not None:
        fields["rate"] = parse_duration(rate, what="rate")
    try:
        spec = ScheduleSpec(**fields)
    except ValidationError as exc:
        raise DeclarationError(f"@schedule: {_first_error(exc)}.") from None
    bad = {p: v for p, v in spec.parameters.items() if v != SCHEDULE_TIME}
    if bad:
        raise DeclarationError(
            f"@schedule: parameters {bad!r} must map to {SCHEDULE_TIME!r}, the tick's time; "
            "other parameters take their defaults."
        )
    policy = _run_policy(retries, retry_backoff, timeout, rate_limit, max_concurrency)

    def decorate(func: F) -> F:
        where = f"@schedule on {getattr(func, '__qualname__', func)!r}"
        decl = _declaration_of(func, where)
        known = {p.name: p for p in decl.parameters}
        for param in spec.parameters:
            if param not in known:
                raise DeclarationError(
                    f"{where}: {param!r} is not a parameter of the flow; parameters are "
                    f"{list(known)}."
                )
        given = set(spec.parameters) | ({SCHEDULED_AT} & set(known))
        missing = [p.name for p in decl.parameters if p.required and p.name not in given]
        if missing:
            raise DeclarationError(
                f"{where}: parameters {missing} have no default, and a scheduled run has no "
                "event to fill them; give them defaults, or map the tick to one with "
                f"parameters={{'{missing[0]}': '{SCHEDULE_TIME}'}}."
            )
        _add_trigger(decl, where, name, base="schedule", schedule=spec, target=target, **policy)
        return func

    return decorate


def target(url: str, **options: Any) -> Callable[[F], F]:
    """Run the decorated flow on ``url`` instead of a local Python process.

    ``command://`` runs an argv (``argv=["python", "flow.py", "run", "--day", "{day}"]``)
    with no shell; ``http(s)://...`` POSTs a JSON body (``body=``, ``success=``,
    ``retries=``, ``backoff=``, ``timeout=``, ``hmac_secret_env=``). Templates take
    the flow's parameters and ``run_name``, ``project``, ``domain``, ``flow``,
    ``parameters``, ``events`` as ``{placeholders}``, substituted as data.
    See :mod:`triggers.targets`.

    Raises:
        DeclarationError: an unknown scheme, a bad option or an unknown placeholder.
    """

    def decorate(func: F) -> F:
        where = f"@target on {getattr(func, '__qualname__', func)!r}"
        decl = _declaration_of(func, where)
        if decl.target is not None:
            raise DeclarationError(f"{where}: the flow has a target already.")
        try:
            decl.target = parse_target(url, options, [p.name for p in decl.parameters])
        except DeclarationError as exc:
            raise DeclarationError(f"{where}: {exc}") from None
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
        DeclarationError: a value that is not a number or a quantity.
    """
    given: dict[str, Any] = {}
    if cpu is not None:
        given["cpu"] = _quantity(cpu, "cpu", "")
    if memory is not None:
        given["memory"] = _quantity(memory, "memory", "Mi")
    if gpu is not None:
        if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 1:
            raise DeclarationError(f"@resources: gpu={gpu!r} must be a whole number ≥ 1.")
        given["gpu"] = gpu

    def decorate(func: F) -> F:
        decl = _declaration_of(func, f"@resources on {getattr(func, '__qualname__', func)!r}")
        decl.resources = given
        return func

    return decorate


_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


def _quantity(value: object, what: str, unit: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return f"{value:g}{unit}"
    if isinstance(value, str) and _QUANTITY.match(value):
        return value
    raise DeclarationError(
        f"@resources: {what}={value!r} must be a number or a Kubernetes quantity like "
        f"{'500m' if what == 'cpu' else '4Gi'}."
    )


def _sized(url: str, options: dict[str, Any], sizes: dict[str, Any]) -> dict[str, Any]:
    """A target's options with the flow's @resources, for k8s:// (its own values win)."""
    return {**sizes, **options} if sizes and url.startswith("k8s://") else options


def _first_error(exc: ValidationError) -> str:
    return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")


def _run_policy(
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


def _declaration_of(func: Any, where: str) -> _Declaration:
    if not inspect.isfunction(func):
        raise DeclarationError(f"{where}: only plain functions can be flows, not {func!r}.")
    decl = getattr(func, _ATTR, None)
    if decl is None:
        decl = _Declaration(parameters=ParamSpec.of(func))
        setattr(func, _ATTR, decl)
    return decl


def _add_trigger(
    decl: _Declaration,
    where: str,
    name: str | None,
    *,
    base: str = "trigger",
    target: str | dict[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Add a trigger named ``name`` (default ``base``, ``base_2``...) to the flow."""
    trigger_name = name or _next_trigger_name(decl, base)
    if any(t.name == trigger_name for t in decl.triggers):
        raise DeclarationError(f"{where}: a trigger named {trigger_name!r} already exists.")
    if target is not None:
        options = dict(target) if isinstance(target, dict) else {"url": target}
        url = options.pop("url", "")
        try:
            spec_target = parse_target(str(url), options, [p.name for p in decl.parameters])
        except DeclarationError as exc:
            raise DeclarationError(f"{where}: {exc}") from None
        fields |= {"target": spec_target.url, "target_options": spec_target.options}
    try:
        spec = TriggerSpec(name=trigger_name, **fields)
    except ValidationError as exc:
        raise DeclarationError(f"{where}: {_first_error(exc)}.") from None
    # Decorators apply bottom-up; insert first so specs follow source order.
    decl.triggers.insert(0, spec)


def _next_trigger_name(decl: _Declaration, base: str = "trigger") -> str:
    taken = {t.name for t in decl.triggers}
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def is_flow(obj: object) -> bool:
    """True for a function that carries tripwire declarations."""
    return inspect.isfunction(obj) and isinstance(getattr(obj, _ATTR, None), _Declaration)


def flow_spec(func: Callable[..., Any], *, path: str | Path | None = None) -> FlowSpec:
    """The deployable spec of a decorated function.

    ``path`` is the file the function was loaded from; the run process loads it
    from there. Without it, the function's module must be importable by name.
    """
    decl = getattr(func, _ATTR, None)
    if not isinstance(decl, _Declaration):
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

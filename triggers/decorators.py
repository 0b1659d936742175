"""The decorators that say when a flow runs: ``@trigger``, ``@trigger_on_finish`` and ``@schedule``.

A decorator validates its arguments when it is applied, records a
:class:`TriggerSpec` on the function (:mod:`triggers.declarations`), and returns the
function unchanged, so a flow still runs as plain Python. A bad declaration raises a
DeclarationError located at the decorator (:mod:`triggers.locations`):
``flows/orders.py:12: flow 'load': <what is wrong; what to write>``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from triggers.conditions import parse_condition
from triggers.declarations import add_trigger, declaration_of, first_error, run_policy
from triggers.errors import DeclarationError
from triggers.filters import Filter
from triggers.locations import at_caller, flow_subject
from triggers.normalize import did_you_mean, normalize_correlation, normalize_dependencies
from triggers.params import ParamSpec
from triggers.spec import (
    CATCHUP,
    DEFAULT_RETRY_BACKOFF,
    DEFAULT_WINDOW,
    FINAL_PHASES,
    SCHEDULE_TIME,
    SCHEDULED_AT,
    AbsenceSpec,
    EventDependency,
    ScheduleSpec,
    finished_event,
    parse_duration,
)

__all__ = ["schedule", "trigger", "trigger_on_finish"]

F = TypeVar("F", bound=Callable[..., Any])


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
        DeclarationError: located at the decorator; the message says what to write.
    """
    if callable(event) and not isinstance(event, str | dict):
        with at_caller(flow_subject(event)):
            raise DeclarationError(
                "@trigger needs an event: write @trigger(event='data_updated') or "
                "@trigger(events=[...], within='1h')."
            )

    def decorate(func: F) -> F:
        with at_caller(flow_subject(func)):
            _check_waits(event, events, sequence, absent, after=after, tz=tz, within=within)
            window = parse_duration(within) if within is not None else DEFAULT_WINDOW
            policy = run_policy(
                retries, retry_backoff, timeout, rate_limit, max_concurrency, debounce
            )
            if threshold is not None:
                policy["threshold"] = _checked_threshold(threshold)
            decl = declaration_of(func, "@trigger")
            if absent is not None:
                deps, fields = _absence_dependencies(decl.parameters, absent, after, tz)
            else:
                deps, fields = _arrival_dependencies(decl.parameters, event, events, sequence)
            if conditions is not None:
                _check_conditions(conditions, deps)
            add_trigger(
                decl,
                name,
                dependencies=deps,
                within=window,
                conditions=conditions,
                correlate_by=normalize_correlation(correlate_by, deps),
                target=target,
                **fields,
                **policy,
            )
        return func

    return decorate


def _check_waits(
    event: object,
    events: object,
    sequence: object,
    absent: object,
    *,
    after: object,
    tz: object,
    within: object,
) -> None:
    """Refuse a @trigger that does not say, once and completely, what it waits for."""
    waits = {"event": event, "events": events, "sequence": sequence, "absent": absent}
    given = [k for k, v in waits.items() if v is not None]
    if len(given) != 1:
        raise DeclarationError(
            "@trigger takes exactly one of event='name', events=[...], sequence=[...] and "
            f"absent='name'{f', not {given}' if given else ''}."
        )
    if (after is not None or tz is not None) and absent is None:
        raise DeclarationError("after= and tz= go with absent='event_name'; drop them or add it.")
    if absent is not None and within is None:
        raise DeclarationError(
            "absent= needs within=..., the window in which the event is expected, "
            "e.g. within='24h'."
        )


def _checked_threshold(threshold: object) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise DeclarationError(f"threshold={threshold!r} must be a whole number ≥ 1.")
    return threshold


def _absence_dependencies(
    parameters: tuple[ParamSpec, ...],
    absent: str | dict[str, Any],
    after: str | dict[str, Any] | None,
    tz: str | None,
) -> tuple[tuple[EventDependency, ...], dict[str, Any]]:
    """The dependencies of ``absent=`` (after those of ``after=``), and its AbsenceSpec."""
    params = [p.name for p in parameters]
    deps = normalize_dependencies(absent, None, parameter_names=params)
    if after is not None:
        deps = (*normalize_dependencies(after, None, parameter_names=params), *deps)
        if deps[0].dep == deps[1].dep:
            raise DeclarationError(
                f"after= and absent= are both {deps[0].dep!r}; give one "
                "of them another name with {'name': ..., 'dep': 'other_name'}."
            )
    missing = [p.name for p in parameters if p.required]
    if after is None and missing:
        raise DeclarationError(
            f"parameters {missing} have no default, and an absence has no "
            "event to fill them; give them defaults, or use after=... to map them "
            "from the event that opens the window."
        )
    absence = AbsenceSpec(dep=deps[-1].dep, after=deps[0].dep if after else None, tz=tz or "UTC")
    return deps, {"absence": absence}


def _arrival_dependencies(
    parameters: tuple[ParamSpec, ...],
    event: str | dict[str, Any] | None,
    events: list[str | dict[str, Any]] | None,
    sequence: list[str | dict[str, Any]] | None,
) -> tuple[tuple[EventDependency, ...], dict[str, Any]]:
    """The dependencies of ``event=``, ``events=`` or ``sequence=``, and whether in order."""
    params = [p.name for p in parameters]
    deps = normalize_dependencies(event, events or sequence, parameter_names=params)
    return deps, {"sequence": sequence is not None}


def _check_conditions(conditions: object, deps: tuple[EventDependency, ...]) -> None:
    if not isinstance(conditions, str):
        raise DeclarationError(
            f"conditions must be a string like 'a && b', not {type(conditions).__name__}."
        )
    parse_condition(conditions, [d.dep for d in deps])


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
        DeclarationError: located at the decorator; the message says what to write.
    """
    if callable(flow) and not isinstance(flow, str):
        with at_caller(flow_subject(flow)):
            raise DeclarationError(
                "@trigger_on_finish needs the upstream flow: write "
                "@trigger_on_finish(flow='upstream_flow')."
            )

    def decorate(func: F) -> F:
        with at_caller(flow_subject(func)):
            deps = _upstreams(flow, flows, on)
            window = parse_duration(within) if within is not None else DEFAULT_WINDOW
            policy = run_policy(
                retries, retry_backoff, timeout, rate_limit, max_concurrency, debounce
            )
            decl = declaration_of(func, "@trigger_on_finish")
            add_trigger(decl, name, dependencies=deps, within=window, target=target, **policy)
        return func

    return decorate


def _upstreams(
    flow: str | None, flows: list[str] | None, on: list[str] | tuple[str, ...]
) -> tuple[EventDependency, ...]:
    """The dependencies of ``@trigger_on_finish``: the lifecycle event of each upstream flow,
    filtered to the phases of ``on``."""
    if (flow is None) == (flows is None):
        raise DeclarationError(
            "@trigger_on_finish takes flow='name' or flows=['a', 'b'], exactly one of them."
        )
    upstream = [flow] if flow is not None else list(flows or [])
    if not upstream or not all(isinstance(f, str) and f.isidentifier() for f in upstream):
        raise DeclarationError(f"upstream flows must be flow names, not {upstream!r}.")
    phases = [on] if isinstance(on, str) else list(on)
    bad = [p for p in phases if p not in FINAL_PHASES]
    if bad or not phases:
        raise DeclarationError(f"on={phases!r} must name final phases: {', '.join(FINAL_PHASES)}.")
    return tuple(
        EventDependency(
            name=finished_event(up),
            dep=up,
            parameters={},  # a lifecycle event's fields are not the flow's parameters
            filters=(Filter(path="$.phase", op="in", value=phases),),
        )
        for up in dict.fromkeys(upstream)
    )


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
        DeclarationError: located at the decorator; the message says what to write.
    """
    if callable(cron) and not isinstance(cron, str):
        with at_caller(flow_subject(cron)):
            raise DeclarationError(
                "@schedule needs a clock: write @schedule(cron='0 0 * * *') or "
                "@schedule(rate='5m')."
            )

    def decorate(func: F) -> F:
        with at_caller(flow_subject(func)):
            spec = _clock(cron, rate, tz, catchup, max_catchup, parameters)
            policy = run_policy(retries, retry_backoff, timeout, rate_limit, max_concurrency)
            decl = declaration_of(func, "@schedule")
            _check_ticked(spec, decl.parameters)
            add_trigger(decl, name, base="schedule", schedule=spec, target=target, **policy)
        return func

    return decorate


def _clock(
    cron: str | None,
    rate: str | float | timedelta | None,
    tz: str,
    catchup: Literal["latest", "all", "none"],
    max_catchup: int,
    parameters: dict[str, str] | None,
) -> ScheduleSpec:
    """The validated clock of ``@schedule``'s arguments."""
    if catchup not in CATCHUP:
        raise DeclarationError(
            f"catchup={catchup!r} must be one of {', '.join(map(repr, CATCHUP))}."
        )
    every = parse_duration(rate, what="rate") if rate is not None else None
    try:
        spec = ScheduleSpec(
            cron=cron,
            rate=every,
            tz=tz,
            catchup=catchup,
            max_catchup=max_catchup,
            parameters=dict(parameters or {}),
        )
    except ValidationError as exc:
        raise DeclarationError(f"{first_error(exc)}.") from None
    bad = {p: v for p, v in spec.parameters.items() if v != SCHEDULE_TIME}
    if bad:
        raise DeclarationError(
            f"parameters {bad!r} must map to {SCHEDULE_TIME!r}, the tick's time; "
            "other parameters take their defaults."
        )
    return spec


def _check_ticked(spec: ScheduleSpec, parameters: tuple[ParamSpec, ...]) -> None:
    """Refuse a schedule that maps the tick to an unknown parameter, or leaves a required
    one without a value."""
    known = [p.name for p in parameters]
    for param in spec.parameters:
        if param not in known:
            raise DeclarationError(
                f"{param!r} is not a parameter of the flow{did_you_mean(param, known)}; "
                f"parameters are {known}."
            )
    given = set(spec.parameters) | ({SCHEDULED_AT} & set(known))
    missing = [p.name for p in parameters if p.required and p.name not in given]
    if missing:
        raise DeclarationError(
            f"parameters {missing} have no default, and a scheduled run has no "
            "event to fill them; give them defaults, or map the tick to one with "
            f"parameters={{'{missing[0]}': '{SCHEDULE_TIME}'}}."
        )

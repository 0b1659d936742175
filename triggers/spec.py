"""Declarations as data: what a decorated flow asks the engine to do.

These pydantic models are the spec vocabulary (after Argo Events): a
:class:`FlowSpec` has :class:`TriggerSpec` s, each made of
:class:`EventDependency` s. They are validated when the decorator runs, and
they are what travels to engine workers, which never import user code.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as parse_jsonpath
from pydantic import BaseModel, ConfigDict, Field, model_validator

from triggers.conditions import Condition, all_of, parse_condition
from triggers.envelope import validate_event_name
from triggers.errors import DeclarationError
from triggers.filters import Filter, TimeOfDay, parse_filter
from triggers.params import ParamSpec

__all__ = [
    "DEFAULT_WINDOW",
    "Entrypoint",
    "EventDependency",
    "FlowSpec",
    "ScheduleSpec",
    "TriggerSpec",
    "compile_jsonpath",
    "normalize_correlation",
    "parse_duration",
]

DEFAULT_WINDOW = timedelta(hours=1)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Special references that read the CloudEvent attributes rather than the payload.
EVENT_ATTRIBUTES = ("$event.id", "$event.name", "$event.time", "$event.source")
_EVENT_KEYS = ("name", "parameters", "dep", "filters", "filters_operator")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventDependency(_Frozen):
    """One event a trigger waits for.

    ``parameters`` maps flow parameter names to a payload field name or a
    JSONPath (a value starting with ``$``). When it is None, default matching
    applies: payload fields named like parameters fill them.
    """

    name: str = Field(description="Event name to match.")
    dep: str = Field(description="Dependency name used in conditions and `current.events`.")
    parameters: dict[str, str] | None = Field(
        None, description="param -> field or JSONPath; None means default matching."
    )
    filters: tuple[Filter | TimeOfDay, ...] = Field(
        (), description="An event counts only if it passes these (see triggers.filters)."
    )
    filters_operator: Literal["and", "or"] = Field(
        "and", description="Whether every filter or any one of them must pass."
    )


DEFAULT_RETRY_BACKOFF = timedelta(seconds=10)

RUN_EVENT_TYPE = "com.tripwire.resource.workflow"
"""The CloudEvent type of a run's lifecycle events (one per phase change)."""
FINAL_PHASES = ("SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT")


def finished_event(flow: str) -> str:
    """The event name a ``trigger_on_finish`` dependency on ``flow`` listens to.

    The engine routes each run lifecycle event under its type and flow, so an
    upstream flow's events reach only the sensors waiting for that flow.
    """
    return f"{RUN_EVENT_TYPE}:{flow}"


SCHEDULE_TIME = "$schedule.time"
"""The parameter source that gives a scheduled run its tick (see :class:`ScheduleSpec`)."""
SCHEDULED_AT = "scheduled_at"
"""A flow parameter of this name gets the tick of a scheduled run without any mapping."""
CATCHUP = ("latest", "all", "none")


class ScheduleSpec(_Frozen):
    """When a scheduled trigger ticks, and what happens to ticks nobody saw in time.

    Exactly one of ``cron`` and ``rate``. Cron ticks are computed in ``tz`` (so
    "0 2 * * *" follows daylight saving time); rate ticks are multiples of the
    rate since the Unix epoch, so every worker computes the same ones.
    """

    cron: str | None = Field(
        None, description="Five-field cron expression, or @hourly, @daily, @weekly, @monthly."
    )
    rate: timedelta | None = Field(None, description="A tick every this long ('5m', '1h').")
    tz: str = Field("UTC", description="IANA time zone the cron expression is read in.")
    catchup: Literal["latest", "all", "none"] = Field(
        "latest",
        description="Ticks missed while no worker ran: 'latest' runs the most recent one, "
        "'all' each of them (oldest first, at most max_catchup), 'none' none.",
    )
    max_catchup: int = Field(100, ge=1, le=10_000, description="Cap for catchup='all'.")
    parameters: dict[str, str] = Field(
        default_factory=dict,
        description=f"param -> {SCHEDULE_TIME!r}: parameters that get the tick's time.",
    )

    @model_validator(mode="after")
    def _valid(self) -> ScheduleSpec:
        # Runs at decoration and again whenever a spec is loaded (deploy, the store).
        if (self.cron is None) == (self.rate is None):
            raise ValueError("give exactly one of cron='0 0 * * *' and rate='5m'")
        if self.cron is not None:
            fields = self.cron.split()
            if not self.cron.startswith("@") and len(fields) != 5:
                raise ValueError(
                    f"cron={self.cron!r} has {len(fields)} fields; write five (minute hour "
                    "day-of-month month day-of-week), or use rate='30s' for seconds"
                )
            if not croniter.is_valid(self.cron):
                raise ValueError(
                    f"cron={self.cron!r} is not a valid cron expression: {_why(self.cron)}"
                )
        if self.rate is not None and self.rate.total_seconds() < 1:
            raise ValueError(f"rate={self.rate} is below the smallest rate, one second")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"tz={self.tz!r} is not an IANA time zone like 'Europe/Berlin'"
            ) from None
        return self

    def describe(self) -> str:
        """'cron 0 0 * * * (UTC)' or 'every 0:05:00', for listings."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.tz})"
        return f"every {self.rate}"


def _why(expression: str) -> str:
    try:
        croniter(expression)
    except Exception as exc:  # croniter's errors say which field is wrong
        return str(exc)
    return "croniter rejects it"


class TriggerSpec(_Frozen):
    """Dependencies that, when satisfied within ``within``, launch one run; or a schedule."""

    name: str = Field(description="Trigger name, unique within its flow.")
    dependencies: tuple[EventDependency, ...] = Field(
        (), description="Events it waits for; none for a scheduled trigger."
    )
    schedule: ScheduleSpec | None = Field(
        None, description="Set for @schedule: the trigger fires on clock ticks, not events."
    )
    within: timedelta = Field(
        DEFAULT_WINDOW, description="All contributing events must fall inside one such window."
    )
    conditions: str | None = Field(
        None, description="Argo Events expression over dependency names; None means all of them."
    )
    correlate_by: dict[str, str] | None = Field(
        None,
        description=(
            "dependency -> JSONPath of its correlation key. State is kept per key value, so "
            "events with different keys never fire together."
        ),
    )
    retries: int = Field(
        0, ge=0, le=100, description="How often a run that failed in the flow's code is retried."
    )
    retry_backoff: timedelta = Field(
        DEFAULT_RETRY_BACKOFF, description="Wait before the first retry; doubled for each next."
    )
    timeout: timedelta | None = Field(
        None, description="A run still going after this (from its start) ends TIMED_OUT."
    )

    @model_validator(mode="after")
    def _events_or_schedule(self) -> TriggerSpec:
        if bool(self.dependencies) == (self.schedule is not None):
            raise ValueError(f"trigger {self.name!r} needs either events or a schedule, not both")
        return self

    def condition(self) -> Condition:
        """The parsed condition (all dependencies when none was given)."""
        names = tuple(d.dep for d in self.dependencies)
        if self.conditions is None:
            return all_of(names)
        return parse_condition(self.conditions, names)


class Entrypoint(_Frozen):
    """Where a run process finds the flow: a file path or a module, and a function name."""

    function: str
    path: str | None = None
    module: str | None = None


class FlowSpec(_Frozen):
    """A flow: its name, how to call it, its parameters and its triggers."""

    name: str
    entrypoint: Entrypoint
    parameters: tuple[ParamSpec, ...]
    triggers: tuple[TriggerSpec, ...] = ()
    target: str = "local://"


def parse_duration(value: object, *, what: str = "within") -> timedelta:
    """Parse "90s", "15m", "1h", "2d", "1w", a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise DeclarationError(
            f"{what}={value!r} is not a duration; write e.g. '90s', '15m', '1h', '2d' "
            "or a datetime.timedelta."
        )
    if seconds <= 0:
        raise DeclarationError(f"{what}={value!r} must be a positive duration, e.g. '90s' or '1h'.")
    return timedelta(seconds=seconds)


@lru_cache(maxsize=4096)
def compile_jsonpath(expression: str) -> Any:
    """Parse a JSONPath once; raise DeclarationError saying what is wrong with it."""
    try:
        return parse_jsonpath(expression)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        raise DeclarationError(f"invalid JSONPath {expression!r}: {exc}") from None


def normalize_dependencies(
    event: Any, events: Any, *, parameter_names: Iterable[str], where: str
) -> tuple[EventDependency, ...]:
    """Accept every Metaflow argument form and return validated dependencies."""
    if (event is None) == (events is None):
        raise DeclarationError(
            f"{where}: pass exactly one of event=... (one event) or events=[...] (several)."
        )
    if event is not None:
        items = [event]
    elif isinstance(events, list | tuple) and events:
        items = list(events)
    else:
        raise DeclarationError(f"{where}: events= must be a non-empty list of names or dicts.")
    names = list(parameter_names)
    deps = tuple(_dependency(item, names, where) for item in items)
    seen: set[str] = set()
    for dep in deps:
        if dep.dep in seen:
            raise DeclarationError(
                f"{where}: dependency name {dep.dep!r} is used twice; give one of them "
                "another name with {'name': ..., 'dep': 'other_name'}."
            )
        seen.add(dep.dep)
    return deps


def _dependency(item: Any, parameter_names: list[str], where: str) -> EventDependency:
    if isinstance(item, str):
        validate_event_name(item, error=DeclarationError)
        return EventDependency(name=item, dep=item)
    if not isinstance(item, dict):
        raise DeclarationError(
            f"{where}: an event must be a name or a dict like "
            f"{{'name': 'data_updated', 'parameters': {{...}}}}, not {type(item).__name__}."
        )
    unknown = set(item) - set(_EVENT_KEYS)
    if unknown:
        key = sorted(unknown)[0]
        raise DeclarationError(
            f"{where}: unknown key {key!r} in event declaration"
            f"{_did_you_mean(key, _EVENT_KEYS)}; the keys are {list(_EVENT_KEYS)}."
        )
    if "name" not in item:
        raise DeclarationError(f"{where}: event dict {item!r} has no 'name'.")
    name = validate_event_name(item["name"], error=DeclarationError)
    dep = item.get("dep", name)
    if "dep" in item and (not isinstance(dep, str) or not _IDENTIFIER.match(dep)):
        raise DeclarationError(
            f"{where}: dep={dep!r} must be an identifier (letters, digits and _, not "
            "starting with a digit), because conditions refer to it."
        )
    here = f"{where}, event {name!r}"
    mapping = _mapping(item.get("parameters"), parameter_names, here)
    raw_filters = item.get("filters") or []
    if not isinstance(raw_filters, list | tuple):
        raw_filters = [raw_filters]
    operator = item.get("filters_operator", "and")
    if operator not in ("and", "or"):
        raise DeclarationError(f"{here}: filters_operator must be 'and' or 'or', not {operator!r}.")
    return EventDependency(
        name=name,
        dep=dep,
        parameters=mapping,
        filters=tuple(parse_filter(f, where=here) for f in raw_filters),
        filters_operator=operator,
    )


def _mapping(raw: Any, parameter_names: list[str], where: str) -> dict[str, str] | None:
    if raw is None:
        return None
    pairs: list[tuple[Any, Any]]
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list | tuple):
        pairs = []
        for entry in raw:
            if isinstance(entry, str):
                pairs.append((entry, entry))
            elif isinstance(entry, list | tuple) and len(entry) == 2:
                pairs.append((entry[0], entry[1]))
            else:
                raise DeclarationError(
                    f"{where}: parameters list entries must be a name or a "
                    f"(flow_param, event_field) pair, not {entry!r}."
                )
    else:
        raise DeclarationError(
            f"{where}: parameters must be a dict {{param: field}} or a list of names and "
            f"(param, field) pairs, not {type(raw).__name__}."
        )
    mapping: dict[str, str] = {}
    for param, source in pairs:
        if not isinstance(param, str) or param not in parameter_names:
            raise DeclarationError(
                f"{where}: {param!r} is not a parameter of the flow"
                f"{_did_you_mean(str(param), parameter_names)}; parameters are {parameter_names}."
            )
        if not isinstance(source, str) or not source:
            raise DeclarationError(
                f"{where}: the source of parameter {param!r} must be a field name or a "
                f"JSONPath string, not {source!r}."
            )
        if source.startswith("$") and source not in EVENT_ATTRIBUTES:
            compile_jsonpath(source)
        mapping[param] = source
    return mapping


def normalize_correlation(
    correlate_by: Any, dependencies: tuple[EventDependency, ...], *, where: str
) -> dict[str, str] | None:
    """``"$.date"`` (every dependency) or ``{dep: "$.path"}`` into one JSONPath per dependency.

    Raises:
        DeclarationError: not a JSONPath, or a dependency without a key path.
    """
    if correlate_by is None:
        return None
    names = [d.dep for d in dependencies]
    if isinstance(correlate_by, str):
        correlate_by = dict.fromkeys(names, correlate_by)
    if not isinstance(correlate_by, dict):
        raise DeclarationError(
            f"{where}: correlate_by is a JSONPath like '$.date', or a dict "
            f"{{dependency: JSONPath}}, not {type(correlate_by).__name__}."
        )
    missing = [n for n in names if n not in correlate_by]
    unknown = [n for n in correlate_by if n not in names]
    if missing or unknown:
        raise DeclarationError(
            f"{where}: correlate_by must give a JSONPath for each dependency {names}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
            + "."
        )
    for path in correlate_by.values():
        if not isinstance(path, str) or not path.startswith("$"):
            raise DeclarationError(
                f"{where}: correlate_by path {path!r} must be a JSONPath ($...)."
            )
        compile_jsonpath(path)
    return dict(correlate_by)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

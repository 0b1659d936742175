"""Declarations as data: what a decorated flow asks the engine to do.

These pydantic models are the spec vocabulary (after Argo Events): a
:class:`FlowSpec` has :class:`TriggerSpec` s, each made of
:class:`EventDependency` s. They are validated when the decorator runs, and
they are what travels to engine workers, which never import user code.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triggers.conditions import Condition, all_of, parse_condition
from triggers.errors import DeclarationError
from triggers.filters import Filter, TimeOfDay
from triggers.params import ParamSpec

__all__ = [
    "DEFAULT_WINDOW",
    "AbsenceSpec",
    "Entrypoint",
    "EventDependency",
    "RateLimit",
    "FlowSpec",
    "MetaflowRun",
    "ScheduleSpec",
    "TriggerSpec",
    "parse_duration",
]


DEFAULT_WINDOW = timedelta(hours=1)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Special references that read the CloudEvent attributes rather than the payload.
EVENT_ATTRIBUTES = ("$event.id", "$event.name", "$event.time", "$event.source")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


def _unset(value: object) -> bool:
    return value is None


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
            from croniter import croniter  # 15 ms: only for a schedule

            if not croniter.is_valid(self.cron):
                raise ValueError(
                    f"cron={self.cron!r} is not a valid cron expression: {_why(self.cron)}"
                )
        if self.rate is not None and self.rate.total_seconds() < 1:
            raise ValueError(f"rate={self.rate} is below the smallest rate, one second")
        check_zone(self.tz)
        return self

    def describe(self) -> str:
        """'cron 0 0 * * * (UTC)' or 'every 0:05:00', for listings."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.tz})"
        return f"every {self.rate}"


def check_zone(tz: str) -> None:
    """Raise ValueError unless ``tz`` names an IANA time zone."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"tz={tz!r} is not an IANA time zone like 'Europe/Berlin'") from None


def _why(expression: str) -> str:
    from croniter import croniter

    try:
        croniter(expression)
    except Exception as exc:  # croniter's errors say which field is wrong
        return str(exc)
    return "croniter rejects it"


class RateLimit(_Frozen):
    """At most ``count`` runs of a trigger start in any ``per`` (a sliding window)."""

    count: int = Field(ge=1, le=1_000_000)
    per: timedelta

    @classmethod
    def parse(cls, text: object) -> RateLimit:
        """'10/m', '100/h', '5/s', '1/d' or '2/30s'.

        Raises:
            DeclarationError: not of that form.
        """
        count, _, per = str(text).partition("/") if isinstance(text, str) else ("", "", "")
        if not count.strip().isdigit() or int(count) < 1 or not per.strip():
            raise DeclarationError(
                f"rate_limit={text!r} must be runs per period, like '10/m', '100/h' or '2/30s'."
            )
        unit = per.strip()
        period = parse_duration(
            f"1{unit}" if unit in ("s", "m", "h", "d", "w") else unit, what="rate_limit period"
        )
        return cls(count=int(count), per=period)

    def describe(self) -> str:
        return f"{self.count} per {self.per}"


MIN_ABSENCE_WINDOW = timedelta(seconds=10)
MAX_THRESHOLD = 10_000


class AbsenceSpec(_Frozen):
    """An absence (SLA) trigger: it fires when an expected event does *not* arrive.

    Without ``after``, windows of ``within`` follow each other on the wall clock of
    ``tz`` (``within="24h"`` gives calendar days) and the trigger fires once for
    each window in which no ``dep`` event happened. With ``after``, each ``after``
    event opens a window of ``within``, and the trigger fires if no ``dep`` event
    followed it inside that window.
    """

    dep: str = Field(description="The dependency that is expected (and may be absent).")
    after: str | None = Field(
        None, description="The dependency whose events open the windows; None: wall-clock windows."
    )
    tz: str = Field("UTC", description="IANA time zone the wall-clock windows are aligned in.")


class TriggerSpec(_Frozen):
    """Dependencies that, when satisfied within ``within``, launch one run; or a schedule.

    How the dependencies are satisfied is one of: all of them (or ``conditions``),
    a count ``threshold``, an ordered ``sequence``, or an ``absence``. ``debounce``
    applies to any of them but absence.
    """

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
    threshold: int | None = Field(
        None,
        ge=1,
        le=MAX_THRESHOLD,
        description="Fire when this many matching events (distinct ids) fall inside one "
        "window of `within`, per correlation key; then count again from zero.",
    )
    sequence: bool = Field(
        False,
        description="The dependencies must happen in declaration order (by event time) "
        "inside one window of `within`.",
    )
    absence: AbsenceSpec | None = Field(
        None, description="Fire when an expected event does not arrive (see AbsenceSpec)."
    )
    debounce: timedelta | None = Field(
        None,
        description="Coalesce fires of the same correlation key into one run, launched "
        "once no new fire came for this long (measured on arrival time).",
    )
    rate_limit: RateLimit | None = Field(
        None, description="Runs over it wait in QUEUED until the window has room; none dropped."
    )
    max_concurrency: int | None = Field(
        None, ge=1, le=100_000, description="Runs beyond this many at once wait in QUEUED."
    )
    target: str | None = Field(
        None, description="Where this trigger's runs execute; None: the flow's target."
    )
    target_options: dict[str, Any] = Field(
        default_factory=dict, description="The options of `target` (triggers.targets)."
    )
    reset_at: ScheduleSpec | None = Field(
        None,
        # Left out of the JSON while unset, so that specs deployed before it keep their digest
        # and their sensors their state; so is every field added since.
        exclude_if=_unset,
        description="Held events that came before the latest tick of this schedule (event "
        "time) no longer count: Metaflow's and Argo Events' conditions reset.",
    )

    @model_validator(mode="after")
    def _valid(self) -> TriggerSpec:
        # Runs at decoration and again whenever a spec is loaded (deploy, the store).
        if bool(self.dependencies) == (self.schedule is not None):
            raise ValueError(f"trigger {self.name!r} needs either events or a schedule, not both")
        kinds = [k for k in ("threshold", "sequence", "absence") if getattr(self, k)]
        if len(kinds) > 1:
            raise ValueError(f"a trigger is one of threshold, sequence and absent, not {kinds}")
        if kinds and self.conditions is not None:
            raise ValueError(f"conditions apply to all-of triggers, not to a {kinds[0]}")
        names = [d.dep for d in self.dependencies]
        if self.sequence:
            if len(names) < 2:
                raise ValueError("a sequence needs at least two events")
            events = [d.name for d in self.dependencies]
            twice = sorted({e for e in events if events.count(e) > 1})
            if twice:
                raise ValueError(f"a sequence names each event once; {twice} appear twice")
        if self.absence is not None:
            self._valid_absence(self.absence, names)
        if self.reset_at is not None and self.kind != "all":
            raise ValueError(f"reset_at applies to all-of triggers, not to a {self.kind}")
        if self.debounce is not None and (self.absence is not None or self.schedule is not None):
            raise ValueError(
                "debounce applies to event triggers; absences and schedules fire "
                "at most once per window or tick already"
            )
        return self

    def _valid_absence(self, absence: AbsenceSpec, names: list[str]) -> None:
        expected = [absence.dep] + ([absence.after] if absence.after else [])
        if sorted(names) != sorted(expected):
            raise ValueError(f"an absence has dependencies {expected}, not {names}")
        if self.within < MIN_ABSENCE_WINDOW:
            raise ValueError(
                f"within={self.within} is too short for an absence; the shortest is "
                f"{MIN_ABSENCE_WINDOW.total_seconds():.0f}s, since the clock decides it"
            )
        if self.correlate_by is not None and absence.after is None:
            raise ValueError(
                "correlate_by needs after=...: only the events that open a window say "
                "which keys to expect"
            )
        check_zone(absence.tz)

    @property
    def kind(self) -> str:
        """'all', 'threshold', 'sequence', 'absence' or 'schedule'."""
        if self.schedule is not None:
            return "schedule"
        if self.threshold is not None:
            return "threshold"
        if self.sequence:
            return "sequence"
        return "absence" if self.absence is not None else "all"

    def condition(self) -> Condition:
        """The parsed condition (all dependencies when none was given)."""
        names = tuple(d.dep for d in self.dependencies)
        if self.conditions is None:
            return all_of(names)
        return parse_condition(self.conditions, names)


class MetaflowRun(_Frozen):
    """How a run process starts a Metaflow flow: ``python FILE [--branch B] [--production]
    run --PARAM VALUE ...``, as read from the flow's ``@project`` when it was deployed."""

    flow: str = Field(description="The FlowSpec class, which is Metaflow's flow name.")
    project: str | None = Field(None, description="@project's name.")
    branch: str | None = Field(
        None, description="Metaflow's branch: 'user.NAME', 'test.B', 'prod'..."
    )
    given_branch: str | None = Field(None, description="The --branch option the runs get.")
    production: bool = Field(False, description="Whether the runs get --production.")
    owner: str | None = Field(
        None, description="METAFLOW_OWNER of a user branch, so every worker names it alike."
    )
    upstream_events: tuple[str, ...] = Field(
        (),
        description="The end events its @trigger_on_finish waits for: a run they start gets "
        "Metaflow's --trigger, which only such flows take.",
    )

    @property
    def project_flow_name(self) -> str:
        """``project.branch.Flow`` under @project, else the flow's name (Metaflow's own)."""
        if self.project and self.branch:
            return f"{self.project}.{self.branch}.{self.flow}"
        return self.flow

    @property
    def end_event(self) -> str:
        """The event Metaflow's Argo integration publishes when a run of this flow ends."""
        return metaflow_end_event(self.project_flow_name)


def metaflow_end_event(project_flow_name: str) -> str:
    """``metaflow.[PROJECT.BRANCH.]FLOW.end``: what ``@trigger_on_finish`` listens to."""
    return f"metaflow.{project_flow_name}.end"


class Entrypoint(_Frozen):
    """Where a run process finds the flow: a file path or a module, and a function name
    (for a Metaflow flow, its FlowSpec class and how to start it)."""

    function: str
    path: str | None = None
    module: str | None = None
    metaflow: MetaflowRun | None = Field(None, exclude_if=_unset)


class FlowSpec(_Frozen):
    """A flow: its name, how to call it, its parameters and its triggers."""

    name: str
    entrypoint: Entrypoint
    parameters: tuple[ParamSpec, ...]
    triggers: tuple[TriggerSpec, ...] = ()
    target: str = "local://"
    target_options: dict[str, Any] = Field(
        default_factory=dict, description="The target's options (triggers.targets)."
    )


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

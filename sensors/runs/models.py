"""What the run store keeps: run requests, runs, trigger failures and deployed sensors."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from triggers.waits import UtcDatetime

__all__ = [
    "Attempt",
    "DeployedSensor",
    "FilterCount",
    "Hold",
    "KeyProgress",
    "NewRun",
    "PhaseChange",
    "Project",
    "RunError",
    "RunRecord",
    "TriggerFailure",
    "UnmatchedCount",
    "UnmatchedMapping",
]


class RunError(BaseModel):
    """Why a run or an attempt failed (Flyte's ExecutionError)."""

    code: str = Field(
        "Unknown",
        description="Short machine-readable cause: the exception type for USER errors "
        "(`ValueError`), or what the platform saw (`ProcessKilled`, `Timeout`, `Aborted`).",
    )
    kind: ErrorKind = Field(description="USER: the flow raised. SYSTEM: the platform failed it.")
    message: str = Field(description="What went wrong, as `tripwire runs get` shows it.")
    traceback: str | None = Field(
        None, description="The flow's traceback, or the tail of the run log for a SYSTEM error."
    )
    timestamp: UtcDatetime | None = Field(None, description="When the failure was seen.")
    worker: str | None = Field(None, description="The worker (host:pid:instance) that saw it.")


class NewRun(BaseModel):
    """A run request: what the sensor stage sends the launcher, and what the store creates."""

    model_config = ConfigDict(frozen=True)

    project: str = Field(description="Project the flow is deployed in.")
    domain: str = Field(description="Domain (environment) within the project.")
    name: str = Field(
        description=(
            "Deterministic (sensor id + contributing event ids). The store accepts a name "
            "once per project and domain: this is what makes launches exactly-once."
        )
    )
    flow: str = Field(description="Name of the flow to run.")
    sensor_id: str | None = Field(
        None, description="`flow.trigger` of the sensor that fired; None when no sensor did."
    )
    trigger: str | None = Field(None, description="Name of the trigger that fired, if any.")
    consumes: list[str] = Field(
        default_factory=list,
        description=(
            "Ids of the events the sensor consumed for this run: those its name is made from. "
            "The store lets each event of a sensor be consumed by one run only, so two workers "
            "that decide different runs from the same events start one. Empty for runs no "
            "sensor made (`tripwire runs create`, recover)."
        ),
    )
    target: str = Field("local://", description="Launch target URL; its scheme picks the launcher.")
    target_options: dict[str, Any] | None = Field(
        None, description="The target's options: an argv, a body template (triggers.targets)."
    )
    entrypoint: dict[str, Any] = Field(description="Where the run process finds the flow function.")
    parameters: dict[str, Any] = Field(description="Coerced parameter values, as JSON.")
    events: list[dict[str, Any]] = Field(
        description=(
            "Contributing events, oldest first: name, id, source, time, payload, dependency."
        )
    )
    retries: int = Field(0, ge=0, description="USER failures retried, each as a new attempt.")
    retry_backoff_seconds: float = Field(
        0.0, ge=0, description="Wait before the first retry; doubled for each later one."
    )
    timeout_seconds: float | None = Field(
        None, gt=0, description="A run still going after this ends TIMED_OUT and is killed."
    )
    rate_limit_count: int | None = Field(
        None, ge=1, description="At most this many runs of its trigger start per window..."
    )
    rate_limit_seconds: float | None = Field(None, gt=0, description="...of this many seconds.")
    max_concurrency: int | None = Field(
        None, ge=1, description="At most this many runs of its trigger at once."
    )
    inputs_uri: str | None = Field(
        None, description="Where its inputs (parameters and events) are kept, as JSON."
    )
    flow_revision: int | None = Field(None, description="The deployed flow revision it runs.")
    recovered_from: str | None = Field(None, description="The run this one recovers, if any.")
    scheduled_at: UtcDatetime | None = Field(
        None, description="For a scheduled run: the tick it runs for (its scheduled start)."
    )
    trigger_info: dict[str, Any] | None = Field(
        None,
        description="How a threshold (count, event_ids), absence (window_start, window_end) "
        "or debounce (fires, coalesced_event_ids) fired, and under `unmatched` the mapped "
        "parameters that kept their defaults because their source matched nothing "
        "(UnmatchedMapping); None when there is neither.",
    )
    traceparent: str | None = Field(
        None,
        description="The W3C trace context the run joins (a fire's span, for a sensor's run): "
        "its admission, launch and attempts are spans of that trace, its process gets it as "
        "TRACEPARENT, and its lifecycle events carry it. None when there is no trace.",
    )
    tracestate: str | None = Field(
        None, description="The W3C tracestate that goes with ``traceparent``, if any."
    )

    @property
    def key(self) -> tuple[str, str, str]:
        """(project, domain, name): what identifies a run in the store."""
        return (self.project, self.domain, self.name)


class RunRecord(NewRun):
    """A run as the store holds it."""

    consumes: list[str] = Field(
        default_factory=list,
        exclude=True,
        description="Not kept on the run (the store keeps claims apart): always empty here.",
    )
    phase: WorkflowPhase = Field(description="Where the run is; only legal moves change it.")
    created_at: UtcDatetime = Field(description="When the store accepted the run (QUEUED).")
    updated_at: UtcDatetime = Field(description="Last write to the run, of any kind.")
    started_at: UtcDatetime | None = Field(None, description="First move to RUNNING.")
    finished_at: UtcDatetime | None = Field(None, description="Move to a terminal phase.")
    error: RunError | None = Field(None, description="Why it failed, when it did.")
    pid: int | None = Field(None, description="Process id of a local run while it runs.")
    attempts: int = Field(0, description="Attempts started so far.")
    abort_cause: str | None = Field(None, description="Why it was aborted, as given.")
    claimed_by: str | None = Field(
        None, description="The worker (host:pid:instance) that claimed the run to start it."
    )
    outputs: dict[str, Any] | None = Field(
        None,
        description="What the run reported about itself when it ended, e.g. "
        "{'metaflow': {'pathspec': 'Flow/12', ...}} for a Metaflow flow.",
    )


class TriggerFailure(BaseModel):
    """An event that satisfied a trigger but could not become a run, and why."""

    sensor_id: str = Field(description="`flow.trigger` of the sensor the event satisfied.")
    event_name: str
    event_id: str = Field(
        description="The store records a failure once per sensor and event id, so a "
        "redelivered event adds nothing."
    )
    reason: str = Field(description="What was wrong and what to change, e.g. a bad parameter.")
    created_at: UtcDatetime


class UnmatchedMapping(BaseModel):
    """A mapped parameter that kept its default: its source matched nothing in the event,
    most often because a field is misspelt."""

    parameter: str
    default: Any = Field(description="The value the run got instead: the parameter's default.")
    source: str = Field(description="The field, JSONPath or event attribute it maps from.")
    event: str = Field(description="Name of the event it was read from.")
    event_id: str

    def describe(self) -> str:
        """One line: ``window: default 3, $.cfg.dayz matched nothing in event e (id 1)``."""
        return (
            f"{self.parameter}: default {json.dumps(self.default, default=str)}, "
            f"{self.source} matched nothing in event {self.event} (id {self.event_id})"
        )


class UnmatchedCount(BaseModel):
    """How many mapped parameters of a sensor's runs kept their defaults, with the last."""

    sensor_id: str
    count: int
    last: str = Field(description="The last one, as UnmatchedMapping.describe() says it.")
    last_run: str = Field(description="The run that kept that default.")
    last_at: datetime


class DeployedSensor(BaseModel):
    """A sensor as deployed: what it waits for and since when it counts events."""

    project: str
    domain: str
    sensor_id: str
    flow: str
    trigger: str
    dependencies: list[dict[str, Any]] = Field(description="Each with `dep` and event `name`.")
    within_seconds: float
    conditions: str | None = Field(None, description="None means all dependencies.")
    correlate_by: dict[str, str] | None = None
    deployed_at: datetime = Field(
        description="First deployment of this revision of the trigger; events that reached "
        "the broker earlier never fire it."
    )
    updated_at: datetime
    revision: int = Field(1, description="The flow revision that last changed the trigger.")
    schedule: dict[str, Any] | None = Field(
        None, description="For a scheduled trigger: its ScheduleSpec, as JSON."
    )
    options: dict[str, Any] | None = Field(
        None,
        description="What the trigger sets beyond all-of: `threshold`, `sequence`, `absence` "
        "(dep, after, tz), `debounce` (seconds).",
    )


class Hold(BaseModel):
    """An event a sensor holds for one dependency, under one correlation key."""

    sensor_id: str
    key: str = Field(description="Correlation key value as JSON; empty without correlate_by.")
    dep: str
    event_id: str
    event_time: datetime
    expires_at: datetime = Field(description="When the event leaves the window and is dropped.")


class KeyProgress(BaseModel):
    """Where one correlation key of a threshold, sequence, absence or debounce stands."""

    sensor_id: str
    key: str = Field(description="Correlation key value as JSON; empty without correlate_by.")
    count: int | None = Field(None, description="Threshold: events counted so far.")
    position: int | None = Field(
        None, description="Sequence: how many steps, from the first, are held in order."
    )
    deadline: datetime | None = Field(
        None, description="Absence: when the next window closes and, if empty, fires."
    )
    debounce_until: datetime | None = Field(
        None, description="Debounce: when the held-back fire launches if nothing else comes."
    )
    coalesced: int | None = Field(None, description="Debounce: fires coalesced so far.")


class FilterCount(BaseModel):
    """Events a dependency filtered out, with the most recent reason."""

    sensor_id: str
    dep: str
    count: int
    last_reason: str
    last_event_id: str
    last_at: datetime


class Attempt(BaseModel):
    """One attempt of a run (Flyte's TaskExecution): a retry is a new attempt."""

    project: str
    domain: str
    name: str
    number: int = Field(description="1 for the first attempt.")
    phase: AttemptPhase
    started_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    error: RunError | None = None
    pid: int | None = None
    worker: str | None = None
    link: str | None = Field(
        None, description="Where the attempt's remote run is seen, e.g. its Prefect UI page."
    )
    traceparent: str | None = Field(
        None,
        description="The W3C trace context of the attempt's span, which its process got and "
        "its lifecycle events carry; None when the worker recorded no span for it.",
    )
    tracestate: str | None = None


class PhaseChange(BaseModel):
    """One move of a run (``attempt`` None) or of one of its attempts, as history keeps it."""

    id: int = Field(description="Increases with every change; the lifecycle event's id.")
    project: str
    domain: str
    name: str
    flow: str
    attempt: int | None = None
    phase: str = Field(description="A WorkflowPhase, or an AttemptPhase for an attempt.")
    at: UtcDatetime
    error: RunError | None = None
    traceparent: str | None = Field(
        None,
        description="The W3C trace context its lifecycle event carries: its attempt's span's "
        "for an attempt's change, where the worker recorded one; else its run's.",
    )
    tracestate: str | None = None


class Project(BaseModel):
    """A project: the namespace of flows and runs (with domains inside, as in Flyte)."""

    name: str
    description: str = ""
    created_at: UtcDatetime

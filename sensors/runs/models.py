"""What the run store keeps: run requests, runs, trigger failures and deployed sensors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sensors.runs.phases import ErrorKind, WorkflowPhase

__all__ = [
    "DeployedSensor",
    "FilterCount",
    "Hold",
    "NewRun",
    "RunError",
    "RunRecord",
    "TriggerFailure",
]


class RunError(BaseModel):
    """Why a run failed."""

    kind: ErrorKind = Field(description="USER: the flow raised. SYSTEM: the platform failed it.")
    message: str
    traceback: str | None = None


class NewRun(BaseModel):
    """A run request: what the sensor stage sends the launcher, and what the store creates."""

    model_config = ConfigDict(frozen=True)

    project: str
    domain: str
    name: str = Field(
        description=(
            "Deterministic (sensor id + contributing event ids). The store accepts a name "
            "once per project and domain: this is what makes launches exactly-once."
        )
    )
    flow: str
    sensor_id: str | None = Field(None, description="`flow.trigger` of the sensor that fired.")
    trigger: str | None = None
    target: str = Field("local://", description="Launch target URL; its scheme picks the launcher.")
    entrypoint: dict[str, Any] = Field(description="Where the run process finds the flow function.")
    parameters: dict[str, Any] = Field(description="Coerced parameter values, as JSON.")
    events: list[dict[str, Any]] = Field(
        description=(
            "Contributing events, oldest first: name, id, source, time, payload, dependency."
        )
    )


class RunRecord(NewRun):
    """A run as the store holds it."""

    phase: WorkflowPhase
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: RunError | None = None
    pid: int | None = Field(None, description="Process id of a local run while it runs.")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.project, self.domain, self.name)


class TriggerFailure(BaseModel):
    """An event that satisfied a trigger but could not become a run, and why."""

    sensor_id: str
    event_name: str
    event_id: str
    reason: str
    created_at: datetime


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
        description="First deployment; events that reached the broker earlier never fire it."
    )
    updated_at: datetime


class Hold(BaseModel):
    """An event a sensor holds for one dependency, under one correlation key."""

    sensor_id: str
    key: str = Field(description="Correlation key value as JSON; empty without correlate_by.")
    dep: str
    event_id: str
    event_time: datetime
    expires_at: datetime = Field(description="When the event leaves the window and is dropped.")


class FilterCount(BaseModel):
    """Events a dependency filtered out, with the most recent reason."""

    sensor_id: str
    dep: str
    count: int
    last_reason: str
    last_event_id: str
    last_at: datetime

"""One sensor's last hour, for its page (``/sensors/{id}``): what it was offered and
filtered per dependency, what it holds and until when, where its keys stand, its fires and
its trigger failures.

The counts and marks are what the sensor stage reported (:mod:`sensors.runs.activity`);
holds and progress what the correlator last reported; fires are the sensor's runs.
"""

from __future__ import annotations

import difflib
from datetime import datetime

from pydantic import BaseModel, Field

from sensors.queries.sensors import SensorStatus, describe, progress_lines, sensor_statuses
from sensors.runs.activity import (
    TIMELINE,
    ActivityMark,
    list_marks,
    offers_by_minute,
)
from sensors.runs.models import Hold, RunRecord, TriggerFailure
from sensors.runs.sensor_records import list_sensors, list_trigger_failures
from sensors.runs.store import RunStore
from triggers.normalize import did_you_mean

__all__ = ["Lane", "SensorPage", "UnknownSensor", "sensor_page"]

_RUNS = 500  # fires shown on the timeline, at most
_RECENT = 20  # runs in the table of recent runs


class Lane(BaseModel):
    """One dependency's row of the timeline."""

    dep: str
    event: str = Field(description="The event name it waits for (a wildcard stays one).")
    offered: int = Field(description="Events offered to it in the hour (filtered ones not).")
    per_minute: dict[datetime, int] = Field(description="Those, by the minute.")
    marks: list[ActivityMark] = Field(
        description="The last event offered or filtered out per batch, oldest first."
    )
    holds: list[Hold] = Field(description="The events it holds now, one per correlation key.")
    filtered: int = Field(0, description="Events it ever filtered out (since the count began).")
    last_reason: str | None = Field(None, description="Why it filtered out the last one.")


class SensorPage(BaseModel):
    """A sensor's page: its status, and its last hour on a timeline."""

    status: SensorStatus
    description: str = Field(description="What fires it, in one line (describe()).")
    since: datetime = Field(description="The timeline's start: an hour before ``now``.")
    now: datetime
    lanes: list[Lane] = Field(description="One per dependency; none for a schedule.")
    fires: list[RunRecord] = Field(description="Its runs created in the hour, oldest first.")
    failures: list[TriggerFailure] = Field(
        description="Events (or ticks) in the hour that satisfied it but made no run."
    )
    progress: list[str] = Field(
        description="A threshold's count, a sequence's step, an absence's deadline, a "
        "debounced fire's launch time, per key (progress_lines())."
    )
    recent: list[RunRecord] = Field(description=f"Its newest {_RECENT} runs, newest first.")


class UnknownSensor(BaseModel):
    """No sensor has the id asked for."""

    message: str
    suggestion: str | None = Field(None, description="The deployed sensor id closest to it.")
    known: list[str]


async def sensor_page(
    store: RunStore, *, project: str, domain: str, sensor_id: str, now: datetime
) -> SensorPage | UnknownSensor:
    """The page of the deployed sensor ``sensor_id`` (``flow.trigger``) as of ``now``."""
    deployed = await list_sensors(store, project=project, domain=domain)
    known = [s.sensor_id for s in deployed]
    if sensor_id not in known:
        return _unknown(sensor_id, known, project, domain)
    [status] = await sensor_statuses(store, project=project, domain=domain, only=sensor_id)
    since = now - TIMELINE
    marks = await list_marks(
        store, project=project, domain=domain, sensor_id=sensor_id, since=since
    )
    counts = await offers_by_minute(
        store, project=project, domain=domain, sensor_id=sensor_id, since=since
    )
    lanes = []
    for dep in status.dependencies:
        per_minute = counts.get(dep.dep, {})
        lanes.append(
            Lane(
                dep=dep.dep,
                event=dep.event,
                offered=sum(per_minute.values()),
                per_minute=per_minute,
                marks=[m for m in marks if m.dep == dep.dep],
                holds=dep.held,
                filtered=dep.filtered.count if dep.filtered else 0,
                last_reason=dep.filtered.last_reason if dep.filtered else None,
            )
        )
    fires = await store.list_runs(
        project=project, domain=domain, sensor_id=sensor_id, since=since, limit=_RUNS
    )
    failures = await list_trigger_failures(store, sensor_id=sensor_id, limit=100)
    recent = await store.list_runs(
        project=project, domain=domain, sensor_id=sensor_id, limit=_RECENT
    )
    return SensorPage(
        status=status,
        description=describe(status.sensor),
        since=since,
        now=now,
        lanes=lanes,
        fires=fires[::-1],
        failures=[f for f in failures if f.created_at >= since][::-1],
        progress=progress_lines(status.sensor, status.progress),
        recent=recent,
    )


def _unknown(sensor_id: str, known: list[str], project: str, domain: str) -> UnknownSensor:
    # A flow's name alone is a common slip: its sensors are flow.trigger.
    of_flow = [k for k in known if k.partition(".")[0] == sensor_id]
    closest = of_flow or difflib.get_close_matches(sensor_id, known, n=1)
    hint = did_you_mean(sensor_id, known) if not of_flow else f" (did you mean {of_flow[0]!r}?)"
    return UnknownSensor(
        message=f"no sensor {sensor_id!r} is deployed in {project}/{domain}{hint}; a sensor's "
        "id is flow.trigger, as the overview and `tripwire sensors list` show",
        suggestion=closest[0] if closest else None,
        known=known,
    )

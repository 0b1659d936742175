"""A sensor's status: what it waits for, holds and filtered out, and its last runs.

`tripwire sensors list|status`, ``GET /api/v1/sensors`` and the web page read
what the workers last reported (:mod:`sensors.stages.reporter`) and print or return it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from sensors.core.schedule import next_tick
from sensors.queries.times import when
from sensors.runs.limits import queued_counts
from sensors.runs.models import (
    DeployedSensor,
    FilterCount,
    Hold,
    KeyProgress,
    RunRecord,
    TriggerFailure,
    UnmatchedCount,
)
from sensors.runs.sensor_records import last_runs_by_sensor, list_sensors, list_trigger_failures
from sensors.runs.status import list_filter_counts, list_holds, list_progress
from sensors.runs.store import RunStore
from sensors.runs.unmatched import list_unmatched_counts
from triggers.errors import StoreError
from triggers.normalize import did_you_mean
from triggers.spec import ScheduleSpec

__all__ = [
    "DependencyStatus",
    "KeyStatus",
    "SensorStatus",
    "dependency_state",
    "describe",
    "key_line",
    "limits",
    "progress_lines",
    "sensor_statuses",
]


class DependencyStatus(BaseModel):
    """One dependency of a sensor: what it holds now and what it filtered out."""

    dep: str
    event: str
    state: str = Field(
        description="`satisfied` while it holds an event for some key, else `awaited`. Under "
        "correlate_by only the events of one key fire together: `keys` says which key holds what."
    )
    held: list[Hold]
    filtered: FilterCount | None


class KeyStatus(BaseModel):
    """One correlation key of a sensor with correlate_by: what it holds, what it awaits."""

    key: str = Field(description="Correlation key value as JSON.")
    held: list[Hold] = Field(description="The events held for this key, one per dependency.")
    awaited: list[str] = Field(description="The dependencies with no event for this key yet.")


class SensorStatus(BaseModel):
    """One sensor's health as `tripwire sensors status` reports it."""

    sensor: DeployedSensor
    dependencies: list[DependencyStatus]
    next_tick: datetime | None = Field(None, description="A scheduled trigger's next tick.")
    queued: int = Field(0, description="Runs waiting in QUEUED (for a rate or concurrency limit).")
    progress: list[KeyProgress] = Field(
        default_factory=list,
        description="Per key: a threshold's count, a sequence's position, an absence's "
        "deadline, a debounced fire's launch time.",
    )
    keys: list[KeyStatus] = Field(
        default_factory=list,
        description="Under correlate_by: per key, newest first, which dependencies hold an "
        "event and which await one.",
    )
    last_run: RunRecord | None
    failures: list[TriggerFailure]
    unmatched: UnmatchedCount | None = Field(
        None,
        description="Mapped parameters of its runs that kept their defaults because their "
        "source matched nothing (a misspelt field), with the last one.",
    )


async def sensor_statuses(
    store: RunStore, *, project: str, domain: str, only: str | None = None
) -> list[SensorStatus]:
    """Each deployed sensor with what it holds, what it filtered, its last run and failures.

    ``only``: one sensor id (``flow.trigger``), or a flow's name for all its sensors.

    Raises:
        StoreError: ``only`` names no deployed sensor or flow.
    """
    sensors = await list_sensors(store, project=project, domain=domain)
    if only is not None:
        sensors = _named(sensors, only)
    one = sensors[0].sensor_id if only is not None and len(sensors) == 1 else None
    last = await last_runs_by_sensor(store)
    holds = await list_holds(store, project=project, domain=domain, sensor_id=one)
    progress = await list_progress(store, project=project, domain=domain, sensor_id=one)
    queued = await queued_counts(store, project=project, domain=domain)
    counts = await list_filter_counts(store, project=project, domain=domain, sensor_id=one)
    unmatched = await list_unmatched_counts(store, project=project, domain=domain, sensor_id=one)
    statuses = []
    for sensor in sensors:
        deps = []
        for d in sensor.dependencies:
            held = [h for h in holds if h.sensor_id == sensor.sensor_id and h.dep == d["dep"]]
            filtered = next(
                (c for c in counts if c.sensor_id == sensor.sensor_id and c.dep == d["dep"]), None
            )
            deps.append(
                DependencyStatus(
                    dep=d["dep"],
                    event=d["name"],
                    held=held,
                    filtered=filtered,
                    state="satisfied" if held else "awaited",
                )
            )
        failures = await list_trigger_failures(store, sensor_id=sensor.sensor_id, limit=5)
        schedule = _schedule(sensor)
        statuses.append(
            SensorStatus(
                sensor=sensor,
                dependencies=deps,
                next_tick=next_tick(schedule, datetime.now(UTC)) if schedule else None,
                progress=[p for p in progress if p.sensor_id == sensor.sensor_id],
                queued=queued.get(sensor.sensor_id, 0),
                keys=_keys(sensor, [h for h in holds if h.sensor_id == sensor.sensor_id]),
                last_run=last.get(sensor.sensor_id),
                failures=failures,
                unmatched=next((u for u in unmatched if u.sensor_id == sensor.sensor_id), None),
            )
        )
    return statuses


def _named(sensors: list[DeployedSensor], name: str) -> list[DeployedSensor]:
    """The sensor ``name`` (``flow.trigger``), or all those of the flow ``name``.

    Raises:
        StoreError: neither is deployed; the message suggests a close id.
    """
    found = [s for s in sensors if s.sensor_id == name] or [s for s in sensors if s.flow == name]
    if not found:
        known = [s.sensor_id for s in sensors] + sorted({s.flow for s in sensors})
        raise StoreError(
            f"no sensor {name!r}{did_you_mean(name, known)}; `tripwire sensors list` shows their "
            "ids (flow.trigger), and a flow's name shows all its sensors"
        )
    return found


def _keys(sensor: DeployedSensor, holds: Sequence[Hold]) -> list[KeyStatus]:
    """The holds of a sensor with correlate_by, by key: newest key first (``holds`` are)."""
    if not sensor.correlate_by:
        return []
    by_key: dict[str, list[Hold]] = {}
    for hold in holds:
        by_key.setdefault(hold.key, []).append(hold)
    deps = [d["dep"] for d in sensor.dependencies]
    keys = []
    for key, held in by_key.items():
        held.sort(key=lambda h: deps.index(h.dep) if h.dep in deps else len(deps))
        present = {h.dep for h in held}
        keys.append(KeyStatus(key=key, held=held, awaited=[d for d in deps if d not in present]))
    return keys


def dependency_state(status: SensorStatus, dep: DependencyStatus) -> str:
    """A dependency's state in words: under correlate_by, holding an event for one key does
    not satisfy it for another, so it says for how many keys it holds one."""
    if not status.sensor.correlate_by or not dep.held:
        return dep.state
    keys = len({h.key for h in dep.held})
    return f"held for {keys} key{'s' if keys != 1 else ''}"


def key_line(key: KeyStatus) -> str:
    """``key 7: payment_received ✓, parcel_packed awaited``."""
    parts = [f"{h.dep} ✓" for h in key.held] + [f"{dep} awaited" for dep in key.awaited]
    return f"key {key.key}: {', '.join(parts)}"


def _schedule(s: DeployedSensor) -> ScheduleSpec | None:
    return ScheduleSpec.model_validate(s.schedule) if s.schedule else None


def describe(s: DeployedSensor) -> str:
    """What fires the sensor, in one line: its condition, window, kind and key."""
    schedule = _schedule(s)
    if schedule is not None:
        return f"{schedule.describe()}, catchup {schedule.catchup}"
    names = [d["dep"] for d in s.dependencies]
    options = s.options or {}
    within = timedelta(seconds=s.within_seconds)
    absence = options.get("absence")
    if absence and absence.get("after"):
        text = f"no {absence['dep']} within {within} after {absence['after']}"
    elif absence:
        text = f"no {absence['dep']} in a {within} window ({absence.get('tz', 'UTC')})"
    elif "threshold" in options:
        text = f"{options['threshold']} x {' | '.join(names)} within {within}"
    elif options.get("sequence"):
        text = f"{' -> '.join(names)} in order within {within}"
    else:
        text = s.conditions or " && ".join(names)
        if len(names) > 1:
            text += f" within {within}"
    if "debounce" in options:
        text += f", debounced {timedelta(seconds=options['debounce'])}"
    if s.correlate_by:
        paths = set(s.correlate_by.values())
        text += f", by {paths.pop() if len(paths) == 1 else json.dumps(s.correlate_by)}"
    return text


def progress_lines(s: DeployedSensor, progress: Sequence[KeyProgress]) -> list[str]:
    """A threshold's count, a sequence's position, an absence's deadline and a debounced
    fire, per key, as lines of text."""
    options, names = s.options or {}, [d["dep"] for d in s.dependencies]
    lines = []
    for p in progress:
        key = f" (key {p.key})" if p.key else ""
        if p.count is not None:
            lines.append(f"count      {p.count}/{options.get('threshold')}{key}")
        if p.position is not None and p.position < len(names):
            lines.append(
                f"sequence   at step {p.position}/{len(names)}, next {names[p.position]}{key}"
            )
        if p.deadline is not None:
            lines.append(f"absence    fires at {when(p.deadline)} unless it arrives{key}")
        if p.debounce_until is not None:
            lines.append(
                f"debounce   launches {when(p.debounce_until)} if quiet, "
                f"{p.coalesced} fire(s) coalesced{key}"
            )
    return lines


def limits(s: DeployedSensor) -> str:
    """The sensor's launch limits, in words; empty when it has none."""
    options = s.options or {}
    found = []
    if "rate_limit" in options:
        found.append(f"at most {options['rate_limit']}")
    if "max_concurrency" in options:
        found.append(f"{options['max_concurrency']} at once")
    return ", ".join(found)

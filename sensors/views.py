"""How the CLI shows things: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from sensors.dev import DevInfo
from sensors.runs.models import DeployedSensor, RunRecord, TriggerFailure
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore

__all__ = [
    "SensorStatus",
    "parse_phase",
    "print_dev_banner",
    "print_run",
    "print_runs",
    "print_sensors",
    "print_statuses",
    "sensor_statuses",
]

_PHASE_STYLE = {
    WorkflowPhase.SUCCEEDED: "green",
    WorkflowPhase.FAILED: "red",
    WorkflowPhase.TIMED_OUT: "red",
    WorkflowPhase.ABORTED: "yellow",
    WorkflowPhase.RUNNING: "cyan",
    WorkflowPhase.QUEUED: "blue",
}


class SensorStatus(BaseModel):
    """One sensor's health as `tripwire sensors status` reports it."""

    sensor: DeployedSensor
    last_run: RunRecord | None
    failures: list[TriggerFailure]


def parse_phase(text: str) -> list[WorkflowPhase]:
    """``FAILED`` or ``failed,aborted`` into phases, or a usage error listing the valid ones."""
    phases = []
    for part in text.split(","):
        try:
            phases.append(WorkflowPhase(part.strip().upper()))
        except ValueError:
            valid = ", ".join(p.value for p in WorkflowPhase)
            raise typer.BadParameter(f"unknown phase {part!r}; use one of {valid}") from None
    return phases


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _phase(phase: WorkflowPhase) -> str:
    style = _PHASE_STYLE.get(phase, "white")
    return f"[{style}]{phase.value}[/{style}]"


def _dump(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def print_dev_banner(info: DevInfo) -> None:
    console = Console(stderr=True, highlight=False)
    console.print(
        f"[bold green]tripwire dev ready[/bold green] in {info.startup_seconds:.1f}s\n"
        f"  broker  {info.bootstrap}\n  store   {info.store_url}\n  home    {info.home}"
    )
    for flow in info.flows:
        for trig in flow.triggers:
            names = ", ".join(d.name for d in trig.dependencies)
            console.print(f"  flow [bold]{flow.name}[/bold] <- {names}")
    if not info.flows:
        console.print("  [yellow]no flows found[/yellow]: pass the files or folders of your flows")
    console.print("Publish from another terminal: tripwire publish data_updated -p rows=42")


def print_runs(console: Console, runs: Sequence[RunRecord], *, as_json: bool) -> None:
    if as_json:
        _dump(console, [r.model_dump(mode="json") for r in runs])
        return
    table = Table("NAME", "FLOW", "PHASE", "CREATED", "PARAMETERS", box=None)
    for run in runs:
        table.add_row(
            run.name,
            run.flow,
            _phase(run.phase),
            _when(run.created_at),
            json.dumps(run.parameters, default=str),
        )
    console.print(table if runs else "no runs yet")


def print_run(console: Console, run: RunRecord, *, as_json: bool) -> None:
    if as_json:
        _dump(console, run.model_dump(mode="json"))
        return
    console.print(f"[bold]{run.name}[/bold]  {_phase(run.phase)}")
    rows = [
        ("flow", run.flow),
        ("project", f"{run.project}/{run.domain}"),
        ("sensor", run.sensor_id or "-"),
        ("target", run.target),
        ("created", _when(run.created_at)),
        ("started", _when(run.started_at)),
        ("finished", _when(run.finished_at)),
    ]
    for key, value in rows:
        console.print(f"  {key:<10} {value}")
    console.print("  parameters")
    for key, value in run.parameters.items():
        console.print(f"    {key} = {json.dumps(value, default=str)}")
    console.print("  events")
    for event in run.events:
        console.print(f"    {event.get('name')}  id={event.get('id')}  time={event.get('time')}")
    if run.error is not None:
        console.print(f"  [red]error ({run.error.kind.value})[/red] {run.error.message}")
        if run.error.traceback:
            console.print(run.error.traceback.rstrip(), markup=False)


def print_sensors(console: Console, sensors: Sequence[DeployedSensor], *, as_json: bool) -> None:
    if as_json:
        _dump(console, [s.model_dump(mode="json") for s in sensors])
        return
    table = Table("SENSOR", "FLOW", "WAITS FOR", "WINDOW", "DEPLOYED", box=None)
    for s in sensors:
        events = ", ".join(d["name"] for d in s.dependencies)
        table.add_row(s.sensor_id, s.flow, events, f"{s.within_seconds:g}s", _when(s.deployed_at))
    console.print(table if sensors else "no sensors deployed")


async def sensor_statuses(
    store: RunStore, *, project: str, domain: str, only: str | None = None
) -> list[SensorStatus]:
    """Each deployed sensor with its last run and recent failures."""
    sensors = await store.list_sensors(project=project, domain=domain)
    if only is not None:
        sensors = [s for s in sensors if s.sensor_id == only]
        if not sensors:
            from triggers.errors import StoreError

            raise StoreError(f"no sensor {only!r}; see `tripwire sensors list` for their ids.")
    last = await store.last_runs_by_sensor()
    statuses = []
    for sensor in sensors:
        failures = await store.list_trigger_failures(sensor_id=sensor.sensor_id, limit=5)
        statuses.append(
            SensorStatus(sensor=sensor, last_run=last.get(sensor.sensor_id), failures=failures)
        )
    return statuses


def print_statuses(console: Console, statuses: Sequence[SensorStatus], *, as_json: bool) -> None:
    if as_json:
        _dump(console, [s.model_dump(mode="json") for s in statuses])
        return
    if not statuses:
        console.print("no sensors deployed")
    for status in statuses:
        s = status.sensor
        events = ", ".join(d["name"] for d in s.dependencies)
        console.print(f"[bold]{s.sensor_id}[/bold]  waits for {events}")
        run = status.last_run
        if run is None:
            console.print("  last run   none yet")
        else:
            console.print(f"  last run   {run.name} {_phase(run.phase)} {_when(run.created_at)}")
        for failure in status.failures:
            console.print(
                f"  [red]failed[/red]     {_when(failure.created_at)} event {failure.event_name} "
                f"(id {failure.event_id}): {failure.reason}"
            )

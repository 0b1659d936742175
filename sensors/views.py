"""How the CLI shows things: rich tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from sensors.dev import DevInfo
from sensors.runs import history as runs_history
from sensors.runs.deploy import Deployment
from sensors.runs.models import (
    Attempt,
    DeployedSensor,
    FilterCount,
    Hold,
    KeyProgress,
    PhaseChange,
    Project,
    RunRecord,
    TriggerFailure,
)
from sensors.runs.phases import WorkflowPhase
from sensors.runs.status import list_filter_counts, list_holds, list_progress
from sensors.runs.store import RunStore
from sensors.schedule import next_tick
from triggers.errors import StoreError
from triggers.spec import ScheduleSpec

__all__ = [
    "RunDetail",
    "SensorStatus",
    "parse_phase",
    "parse_since",
    "run_detail",
    "print_deployment",
    "print_dev_banner",
    "print_projects",
    "print_run",
    "print_runs",
    "print_sensors",
    "print_statuses",
    "sensor_statuses",
]

_SHOWN_HOLDS = 5

_PHASE_STYLE = {
    WorkflowPhase.SUCCEEDED: "green",
    WorkflowPhase.FAILED: "red",
    WorkflowPhase.TIMED_OUT: "red",
    WorkflowPhase.ABORTED: "yellow",
    WorkflowPhase.RUNNING: "cyan",
    WorkflowPhase.QUEUED: "blue",
}


class DependencyStatus(BaseModel):
    """One dependency of a sensor: what it holds now and what it filtered out."""

    dep: str
    event: str
    state: str = Field(
        description="`satisfied` while it holds an event for some key, else `awaited`."
    )
    held: list[Hold]
    filtered: FilterCount | None


class SensorStatus(BaseModel):
    """One sensor's health as `tripwire sensors status` reports it."""

    sensor: DeployedSensor
    dependencies: list[DependencyStatus]
    next_tick: datetime | None = Field(None, description="A scheduled trigger's next tick.")
    progress: list[KeyProgress] = Field(
        default_factory=list,
        description="Per key: a threshold's count, a sequence's position, an absence's "
        "deadline, a debounced fire's launch time.",
    )
    last_run: RunRecord | None
    failures: list[TriggerFailure]


class RunDetail(BaseModel):
    """A run with its attempts and phase history, as `tripwire runs get` shows it."""

    run: RunRecord
    attempts: list[Attempt]
    history: list[PhaseChange]


async def run_detail(store: RunStore, name: str, *, project: str, domain: str) -> RunDetail:
    run = await store.get_run(name, project=project, domain=domain)
    return RunDetail(
        run=run,
        attempts=await runs_history.attempts(store, run.project, run.domain, run.name),
        history=await runs_history.history(store, run.project, run.domain, run.name),
    )


def parse_since(text: str, now: datetime) -> datetime:
    """``2026-11-23T08:00:00Z`` or a duration back from now (``90m``, ``1d``).

    Raises:
        ValueError: neither; the message shows both forms.
    """
    from triggers.errors import DeclarationError
    from triggers.spec import parse_duration

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - parse_duration(text, what="since")
        except DeclarationError:
            raise ValueError(
                f"{text!r} is neither an ISO 8601 time (2026-11-23T08:00:00Z) nor a "
                "duration back from now (90m, 1d)"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)


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


def when(value: datetime | None) -> str:
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
        f"  broker  {info.bootstrap}\n  store   {info.store_url}\n  home    {info.home}\n"
        f"  api     {info.api_url}  (web page: {info.api_url}/)\n"
        f"  token   {info.api_token}  (local admin token for the API and the page)"
    )
    for flow in info.flows:
        for trig in flow.triggers:
            names = ", ".join(d.name for d in trig.dependencies)
            if trig.schedule is not None:
                names = trig.schedule.describe()
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
            when(run.created_at),
            json.dumps(run.parameters, default=str),
        )
    console.print(table if runs else "no runs yet")


def print_run(console: Console, detail: RunDetail, *, as_json: bool) -> None:
    if as_json:
        # The run's own fields at the top, as `runs list --json` gives them, plus its story.
        data = detail.model_dump(mode="json")
        _dump(console, {**data["run"], "attempts": data["attempts"], "history": data["history"]})
        return
    run = detail.run
    console.print(f"[bold]{run.name}[/bold]  {_phase(run.phase)}")
    rows = [
        ("flow", run.flow),
        ("project", f"{run.project}/{run.domain}"),
        ("sensor", run.sensor_id or "-"),
        ("target", run.target),
        ("created", when(run.created_at)),
        *([("scheduled", when(run.scheduled_at))] if run.scheduled_at else []),
        ("started", when(run.started_at)),
        ("finished", when(run.finished_at)),
        ("retries", f"{run.retries} (backoff {run.retry_backoff_seconds:g}s)"),
        ("timeout", f"{run.timeout_seconds:g}s" if run.timeout_seconds else "-"),
        ("inputs", run.inputs_uri or "-"),
        ("revision", str(run.flow_revision) if run.flow_revision else "-"),
    ]
    if run.recovered_from:
        rows.append(("recovers", run.recovered_from))
    if run.abort_cause:
        rows.append(("aborted", run.abort_cause))
    rows += _trigger_info_rows(run.trigger_info or {})
    for key, value in rows:
        console.print(f"  {key:<10} {value}")
    console.print("  parameters")
    for key, value in run.parameters.items():
        console.print(f"    {key} = {json.dumps(value, default=str)}")
    console.print("  events")
    for event in run.events:
        console.print(f"    {event.get('name')}  id={event.get('id')}  time={event.get('time')}")
    console.print("  attempts")
    for attempt in detail.attempts:
        took = (attempt.finished_at - attempt.started_at) if attempt.finished_at else None
        console.print(
            f"    #{attempt.number}  {attempt.phase.value:<16} started {when(attempt.started_at)}"
            f"  took {_took(took)}  worker {attempt.worker or '-'}  pid {attempt.pid or '-'}"
        )
        if attempt.error is not None:
            error = attempt.error
            shown = error.message
            if not shown.startswith(error.code):
                shown = f"{error.code}: {shown}"
            console.print(f"        {shown}", markup=False)
    console.print("  history")
    for change in detail.history:
        what = "run" if change.attempt is None else f"attempt #{change.attempt}"
        console.print(f"    {when(change.at)}  {what:<11} {change.phase}")
    if run.error is not None:
        error = run.error
        console.print(
            f"  [red]error {error.kind.value} {error.code}[/red] at {when(error.timestamp)} "
            f"on {error.worker or '-'}: {error.message}"
        )
        if error.traceback:
            console.print(error.traceback.rstrip(), markup=False)


def _trigger_info_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if info.get("kind") == "threshold":
        rows.append(("threshold", f"{info['count']} events: {', '.join(info['event_ids'])}"))
    if info.get("kind") == "absence":
        after = f" after event {info['after_event_id']}" if info.get("after_event_id") else ""
        rows.append(("absent in", f"{info['window_start']} .. {info['window_end']}{after}"))
    if "debounce" in info:
        coalesced = info["debounce"]
        ids = coalesced["coalesced_event_ids"]
        shown = ", ".join(ids[:10]) + (f" ... ({len(ids)} ids)" if len(ids) > 10 else "")
        rows.append(("coalesced", f"{coalesced['fires']} fire(s): {shown}"))
    return rows


def _took(value: timedelta | None) -> str:
    return f"{value.total_seconds():.1f}s" if value is not None else "-"


def print_deployment(console: Console, done: Deployment, *, as_json: bool) -> None:
    if as_json:
        _dump(console, dataclasses.asdict(done))
        return
    where = f"{done.project}/{done.domain}"
    for label, names in (
        ("created", done.created),
        ("changed", done.changed),
        ("unchanged", done.unchanged),
        ("retired", done.retired),
    ):
        for name in names:
            revision = done.revisions.get(name)
            suffix = f" (revision {revision})" if revision and label != "retired" else ""
            console.print(f"{label:<10} {name}{suffix}")
    if not (done.created or done.changed or done.unchanged or done.retired):
        console.print(f"no flows found to deploy to {where}")


def print_projects(console: Console, projects: Sequence[Project], *, as_json: bool) -> None:
    if as_json:
        _dump(console, [p.model_dump(mode="json") for p in projects])
        return
    table = Table("PROJECT", "DESCRIPTION", "CREATED", box=None)
    for project in projects:
        table.add_row(project.name, project.description, when(project.created_at))
    console.print(table if projects else "no projects yet")


def print_sensors(console: Console, sensors: Sequence[DeployedSensor], *, as_json: bool) -> None:
    if as_json:
        _dump(console, [s.model_dump(mode="json") for s in sensors])
        return
    table = Table("SENSOR", "FLOW", "WAITS FOR", "FIRES ON", "DEPLOYED", box=None)
    for s in sensors:
        events = ", ".join(d["name"] for d in s.dependencies) or "the clock"
        table.add_row(s.sensor_id, s.flow, events, _describe(s), when(s.deployed_at))
    console.print(table if sensors else "no sensors deployed")


async def sensor_statuses(
    store: RunStore, *, project: str, domain: str, only: str | None = None
) -> list[SensorStatus]:
    """Each deployed sensor with what it holds, what it filtered, its last run and failures."""
    sensors = await store.list_sensors(project=project, domain=domain)
    if only is not None:
        sensors = [s for s in sensors if s.sensor_id == only]
        if not sensors:
            raise StoreError(f"no sensor {only!r}; see `tripwire sensors list` for their ids.")
    last = await store.last_runs_by_sensor()
    holds = await list_holds(store, project=project, domain=domain, sensor_id=only)
    progress = await list_progress(store, project=project, domain=domain, sensor_id=only)
    counts = await list_filter_counts(store, project=project, domain=domain, sensor_id=only)
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
        failures = await store.list_trigger_failures(sensor_id=sensor.sensor_id, limit=5)
        schedule = _schedule(sensor)
        statuses.append(
            SensorStatus(
                sensor=sensor,
                dependencies=deps,
                next_tick=next_tick(schedule, datetime.now(UTC)) if schedule else None,
                progress=[p for p in progress if p.sensor_id == sensor.sensor_id],
                last_run=last.get(sensor.sensor_id),
                failures=failures,
            )
        )
    return statuses


def _schedule(s: DeployedSensor) -> ScheduleSpec | None:
    return ScheduleSpec.model_validate(s.schedule) if s.schedule else None


def _describe(s: DeployedSensor) -> str:
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
        text += f", by {paths.pop() if len(paths) == 1 else s.correlate_by}"
    return text


def _progress_lines(s: DeployedSensor, progress: Sequence[KeyProgress]) -> list[str]:
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


def print_statuses(console: Console, statuses: Sequence[SensorStatus], *, as_json: bool) -> None:
    if as_json:
        _dump(console, [s.model_dump(mode="json") for s in statuses])
        return
    if not statuses:
        console.print("no sensors deployed")
    for status in statuses:
        s = status.sensor
        console.print(f"[bold]{s.sensor_id}[/bold]  fires on {_describe(s)}")
        for dep in status.dependencies:
            style = "green" if dep.state == "satisfied" else "yellow"
            label = dep.dep if dep.dep == dep.event else f"{dep.dep} ({dep.event})"
            console.print(f"  {label:<24} [{style}]{dep.state}[/{style}]")
            for hold in dep.held[:_SHOWN_HOLDS]:
                key = f" key {hold.key}" if hold.key else ""
                console.print(
                    f"    holds {hold.event_id}{key} from {when(hold.event_time)}, "
                    f"expires {when(hold.expires_at)}"
                )
            if len(dep.held) > _SHOWN_HOLDS:
                console.print(f"    ... and {len(dep.held) - _SHOWN_HOLDS} more keys (--json)")
            if dep.filtered is not None:
                f = dep.filtered
                console.print(
                    f"    filtered out {f.count}, last {when(f.last_at)} "
                    f"(event {f.last_event_id}): {f.last_reason}"
                )
        for line in _progress_lines(s, status.progress[:_SHOWN_HOLDS]):
            console.print(f"  {line}")
        if len(status.progress) > _SHOWN_HOLDS:
            console.print(f"  ... and {len(status.progress) - _SHOWN_HOLDS} more keys (--json)")
        if status.next_tick is not None:
            console.print(f"  next tick  {when(status.next_tick)}")
        run = status.last_run
        if run is None:
            console.print("  last run   none yet")
        else:
            console.print(f"  last run   {run.name} {_phase(run.phase)} {when(run.created_at)}")
        for failure in status.failures[:1]:
            console.print(
                f"  [red]last failure[/red] {when(failure.created_at)} event "
                f"{failure.event_name} (id {failure.event_id}): {failure.reason}"
            )

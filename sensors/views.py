"""How the CLI shows things: rich tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import typer
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from sensors.dev import DevInfo
from sensors.launchers import scheme_of
from sensors.launchers.process import run_dir
from sensors.runs import history as runs_history
from sensors.runs.deploy import Deployment
from sensors.runs.models import (
    Attempt,
    PhaseChange,
    Project,
    RunRecord,
)
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from triggers.settings import get_settings

__all__ = [
    "dump",
    "styled_phase",
    "RunDetail",
    "parse_phase",
    "parse_since",
    "TaskLog",
    "run_detail",
    "run_logs",
    "print_deployment",
    "print_dev_banner",
    "print_projects",
    "print_run",
    "print_runs",
]

_PHASE_STYLE = {
    WorkflowPhase.SUCCEEDED: "green",
    WorkflowPhase.FAILED: "red",
    WorkflowPhase.TIMED_OUT: "red",
    WorkflowPhase.ABORTED: "yellow",
    WorkflowPhase.RUNNING: "cyan",
    WorkflowPhase.QUEUED: "blue",
}


class TaskLog(BaseModel):
    """Where a run's log is (Flyte's TaskLog): a name and a URI."""

    name: str
    uri: str


class RunDetail(BaseModel):
    """A run with its attempts and phase history, as `tripwire runs get` shows it."""

    run: RunRecord
    attempts: list[Attempt]
    history: list[PhaseChange]
    logs: list[TaskLog] = Field(default_factory=list, description="Where its logs are.")


def run_logs(run: RunRecord) -> list[TaskLog]:
    """Where a run's logs are: the run folder's log for the targets a worker runs itself,
    the Job's pods or the Workflow in the cluster for the others."""
    scheme = scheme_of(run.target)
    if scheme == "k8s":
        return [TaskLog(name="Kubernetes Job", uri=f"{run.target.rstrip('/')}/jobs/{run.name}")]
    if scheme == "argo":
        namespace = run.target.split("/")[2]
        return [TaskLog(name="Argo Workflow", uri=f"argo://{namespace}/workflows/{run.name}")]
    path = run_dir(get_settings(), run.name) / "run.log"
    return [TaskLog(name="run.log", uri=path.as_uri())]


async def run_detail(store: RunStore, name: str, *, project: str, domain: str) -> RunDetail:
    run = await store.get_run(name, project=project, domain=domain)
    return RunDetail(
        run=run,
        attempts=await runs_history.attempts(store, run.project, run.domain, run.name),
        history=await runs_history.history(store, run.project, run.domain, run.name),
        logs=run_logs(run),
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


def styled_phase(phase: WorkflowPhase) -> str:
    style = _PHASE_STYLE.get(phase, "white")
    return f"[{style}]{phase.value}[/{style}]"


def dump(console: Console, data: Any) -> None:
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
        dump(console, [r.model_dump(mode="json") for r in runs])
        return
    table = Table("NAME", "FLOW", "PHASE", "CREATED", "PARAMETERS", box=None)
    for run in runs:
        table.add_row(
            run.name,
            run.flow,
            styled_phase(run.phase),
            when(run.created_at),
            json.dumps(run.parameters, default=str),
        )
    console.print(table if runs else "no runs yet")


def print_run(console: Console, detail: RunDetail, *, as_json: bool) -> None:
    if as_json:
        # The run's own fields at the top, as `runs list --json` gives them, plus its story.
        data = detail.model_dump(mode="json")
        dump(console, {**data["run"], "attempts": data["attempts"], "history": data["history"]})
        return
    run = detail.run
    console.print(f"[bold]{run.name}[/bold]  {styled_phase(run.phase)}")
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
    rows += [("log", log.uri) for log in detail.logs]
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
        dump(console, dataclasses.asdict(done))
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
    for label, names in done.sources.items():
        for name in names:
            console.print(f"{label:<10} source {name}")
    if not (done.created or done.changed or done.unchanged or done.retired) and not any(
        done.sources.values()
    ):
        console.print(f"no flows or sources found to deploy to {where}")


def print_projects(console: Console, projects: Sequence[Project], *, as_json: bool) -> None:
    if as_json:
        dump(console, [p.model_dump(mode="json") for p in projects])
        return
    table = Table("PROJECT", "DESCRIPTION", "CREATED", box=None)
    for project in projects:
        table.add_row(project.name, project.description, when(project.created_at))
    console.print(table if projects else "no projects yet")

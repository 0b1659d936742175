"""Rendering for the CLI: rich tables and text for people, JSON for scripts.

What is shown comes from the read models (:mod:`sensors.queries`); this module only
lays it out.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sensors.queries.times import when

if TYPE_CHECKING:
    from sensors.queries.runs import RunDetail
    from sensors.queries.sensors import SensorStatus
    from sensors.runs.deploy import Deployment
    from sensors.runs.import_problems import ImportProblem
    from sensors.runs.models import DeployedSensor, Hold, Project, RunRecord
    from sensors.runs.phases import WorkflowPhase
    from triggers.sources import EventSource

__all__ = [
    "dump",
    "styled_phase",
    "print_deployment",
    "print_import_problems",
    "print_projects",
    "print_run",
    "print_runs",
    "print_sensors",
    "print_statuses",
    "warn_unidentified",
]

# By WorkflowPhase value (a StrEnum, equal to its value): importing it loads the SDK, which
# `tripwire --help` does not need (start-up time, bench/startup.py).
_PHASE_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "TIMED_OUT": "red",
    "ABORTED": "yellow",
    "RUNNING": "cyan",
    "QUEUED": "blue",
}


_SHOWN_HOLDS = 5


def styled_phase(phase: WorkflowPhase) -> str:
    style = _PHASE_STYLE.get(phase, "white")
    return f"[{style}]{phase.value}[/{style}]"


def dump(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


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
    from triggers.error_text import with_code  # here: the SDK costs start-up time

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
    rows += [("unmatched", escape(u.describe())) for u in detail.unmatched]
    metaflow = (run.outputs or {}).get("metaflow") or {}
    if metaflow.get("pathspec"):
        rows.append(("metaflow", str(metaflow["pathspec"])))
    rows += [("log", log.uri) for log in detail.logs]
    for key, value in rows:
        console.print(f"  {key:<10} {value}")
    console.print("  parameters")
    for key, value in run.parameters.items():
        console.print(f"    {key} = {json.dumps(value, default=str)}")
    console.print("  events")
    for event in run.events:
        console.print(
            f"    {event.get('name')}  id={event.get('id')}  time={event.get('time') or '-'}"
        )
    console.print("  attempts")
    for attempt in detail.attempts:
        took = (attempt.finished_at - attempt.started_at) if attempt.finished_at else None
        console.print(
            f"    #{attempt.number}  {attempt.phase.value:<16} started {when(attempt.started_at)}"
            f"  took {_took(took)}  worker {attempt.worker or '-'}  pid {attempt.pid or '-'}"
        )
        if attempt.error is not None:
            shown = with_code(attempt.error.code, attempt.error.message)
            console.print(f"        {shown}", markup=False)
    console.print("  history")
    for change in detail.history:
        what = "run" if change.attempt is None else f"attempt #{change.attempt}"
        console.print(f"    {when(change.at)}  {what:<11} {change.phase}")
    if run.error is not None:
        error = run.error
        console.print(
            f"  [red]error {error.kind.value}[/red] at {when(error.timestamp)} "
            f"on {error.worker or '-'}: {escape(with_code(error.code, error.message))}"
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


def print_sensors(console: Console, sensors: Sequence[DeployedSensor], *, as_json: bool) -> None:
    # Here, not at the top: the read model imports the run store (start-up time).
    from sensors.queries.sensors import describe

    if as_json:
        dump(console, [s.model_dump(mode="json") for s in sensors])
        return
    table = Table("SENSOR", "FLOW", "WAITS FOR", "FIRES ON", "DEPLOYED", box=None)
    for s in sensors:
        events = ", ".join(d["name"] for d in s.dependencies) or "the clock"
        table.add_row(s.sensor_id, s.flow, events, describe(s), when(s.deployed_at))
    console.print(table if sensors else "no sensors deployed")


def print_import_problems(console: Console, problems: Sequence[ImportProblem]) -> None:
    """The flow files that failed to import, as `tripwire dev` last loaded them."""
    if not problems:
        return
    console.print(
        "[red]import errors[/red] (until these files are fixed, their new and changed flows "
        "are not served):"
    )
    for problem in problems:
        console.print(f"  {problem.short()}", markup=False)


def print_statuses(console: Console, statuses: Sequence[SensorStatus], *, as_json: bool) -> None:
    from sensors.queries.sensors import describe, limits, progress_lines

    if as_json:
        dump(console, [s.model_dump(mode="json") for s in statuses])
        return
    if not statuses:
        console.print("no sensors deployed")
    for status in statuses:
        s = status.sensor
        console.print(f"[bold]{s.sensor_id}[/bold]  fires on {describe(s)}")
        _print_dependencies(console, status)
        for line in progress_lines(s, status.progress[:_SHOWN_HOLDS]):
            console.print(f"  {line}")
        if len(status.progress) > _SHOWN_HOLDS:
            console.print(f"  ... and {len(status.progress) - _SHOWN_HOLDS} more keys (--json)")
        if status.next_tick is not None:
            console.print(f"  next tick  {when(status.next_tick)}")
        shown = limits(s)
        if shown or status.queued:
            console.print(f"  limits     {shown or 'none'}; {status.queued} run(s) queued")
        run = status.last_run
        if run is None:
            console.print("  last run   none yet")
        else:
            console.print(
                f"  last run   {run.name} {styled_phase(run.phase)} {when(run.created_at)}"
            )
        for failure in status.failures[:1]:
            console.print(
                f"  [red]last failure[/red] {when(failure.created_at)} event "
                f"{failure.event_name} (id {failure.event_id}): {failure.reason}"
            )
        if status.unmatched is not None:
            u = status.unmatched
            console.print(
                f"  [yellow]unmatched[/yellow]  {u.count} mapping(s) kept their default; last "
                f"{when(u.last_at)}, run {u.last_run}: {escape(u.last)}"
            )


def _print_dependencies(console: Console, status: SensorStatus) -> None:
    """Each dependency's state and what it filtered out; what is held, by key under
    correlate_by (an event held for one key does not satisfy another)."""
    from sensors.queries.sensors import dependency_state, key_line

    for dep in status.dependencies:
        label = dep.dep if dep.dep == dep.event else f"{dep.dep} ({dep.event})"
        state = dependency_state(status, dep)
        style = "green" if state == "satisfied" else "yellow"
        console.print(f"  {label:<24} [{style}]{state}[/{style}]")
        if not status.keys:
            for hold in dep.held[:_SHOWN_HOLDS]:
                console.print(f"    {_held(hold)}")
            if len(dep.held) > _SHOWN_HOLDS:
                console.print(f"    ... and {len(dep.held) - _SHOWN_HOLDS} more keys (--json)")
        if dep.filtered is not None:
            f = dep.filtered
            console.print(
                f"    filtered out {f.count}, last {when(f.last_at)} "
                f"(event {f.last_event_id}): {f.last_reason}"
            )
    for key in status.keys[:_SHOWN_HOLDS]:
        console.print(f"  {key_line(key)}", markup=False)
        for hold in key.held:
            console.print(f"    {hold.dep} {_held(hold)}")
    if len(status.keys) > _SHOWN_HOLDS:
        console.print(f"  ... and {len(status.keys) - _SHOWN_HOLDS} more keys (--json)")


def _held(hold: Hold) -> str:
    return f"holds {hold.event_id} from {when(hold.event_time)}, expires {when(hold.expires_at)}"


def warn_unidentified(console: Console, sources: Sequence[EventSource]) -> None:
    """Say which sources make a new event id when their bus redelivers a message."""
    for spec in sources:
        if spec.id is None and spec.kind == "mqtt":
            console.print(
                f"[yellow]note:[/yellow] source {spec.name!r}: MQTT messages carry no id, so a "
                "message redelivered after a crash becomes a second event; set `id:` to a "
                "field that identifies the message (e.g. id: $.order_id) to run it once."
            )
        elif spec.id is None and spec.kind == "rabbitmq":
            console.print(
                f"[yellow]note:[/yellow] source {spec.name!r}: a message without a message_id "
                "property gets a new event id when redelivered after a crash; publish with "
                "message_id, or set `id:` to a field that identifies the message."
            )

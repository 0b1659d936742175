"""``tripwire deploy``, ``tripwire projects ...`` and ``tripwire runs ...``.

Like every command, these only translate to the run service and store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from sensors.cli import render
from sensors.cli.base import (
    DomainOption,
    JsonOption,
    ProjectOption,
    RunName,
    T,
    VerboseOption,
    cli_settings,
    complete_flow,
    err,
    fail,
    out,
    parse_pairs,
    run_sync,
    scope,
    with_store,
)

if TYPE_CHECKING:
    from sensors.runs.phases import WorkflowPhase

__all__ = ["deploy", "projects_app", "runs_app"]

runs_app = typer.Typer(help="Create, inspect, abort and recover runs.", no_args_is_help=True)
projects_app = typer.Typer(help="Create and list projects.", no_args_is_help=True)


def deploy(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Flow files, sources YAML files, or folders of them, to deploy."),
    ],
    project: ProjectOption = None,
    domain: DomainOption = None,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Retire deployed flows and sources that are not in PATHS."),
    ] = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Register the flows and event sources in PATHS, and the flows' triggers.

    The same content again changes nothing; a changed flow or source gets a new
    revision and the old one is retired. Running workers pick the changes up. If any
    file fails to load, nothing is deployed, and each such file is named.
    """
    # Each command imports the store and the SDK it uses, so that `tripwire --help` starts fast.
    import dataclasses

    from sensors.registry import FlowImportError, discover
    from sensors.runs.deploy import deploy as deploy_flows
    from sensors.sources.store import deploy_sources

    try:
        specs, sources = discover(paths, outcome="nothing was deployed")
    except FlowImportError as exc:
        if verbose:
            for problem in exc.problems:
                err.print(problem.traceback, markup=False, highlight=False)
        raise

    async def main(store: Any) -> Any:
        done = await deploy_flows(store, specs, **scope(project, domain), prune=prune)
        if sources or prune:
            deployed = await deploy_sources(store, sources, **scope(project, domain), prune=prune)
            done.sources = dataclasses.asdict(deployed)
        render.warn_unidentified(err, sources)
        return done

    done = run_sync(with_store(main))
    render.print_deployment(out, done, as_json=as_json)


@projects_app.command("create")
def projects_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and '-'; up to 63.")],
    description: Annotated[str, typer.Option(help="What the project is for.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create a project (deploying to one creates it too)."""
    from sensors.runs.deploy import create_project

    project, created = run_sync(with_store(lambda store: create_project(store, name, description)))
    if as_json:
        out.print_json(json.dumps({**project.model_dump(mode="json"), "created": created}))
    else:
        out.print(f"project {name} {'created' if created else 'already exists'}")


@projects_app.command("list")
def projects_list(as_json: JsonOption = False) -> None:
    """List projects."""
    from sensors.runs.deploy import list_projects

    projects = run_sync(with_store(list_projects))
    render.print_projects(out, projects, as_json=as_json)


async def _with_service(action: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    from aiokafka.errors import KafkaError

    from sensors.runs.objects import ObjectStore
    from sensors.runs.service import RunService
    from sensors.stages.kafka import new_producer
    from triggers.errors import ConfigurationError

    settings = cli_settings()
    settings.require_bootstrap()

    async def act(store: Any) -> T:
        producer = new_producer(settings, request_timeout_ms=int(settings.publish_timeout * 1000))
        try:
            await asyncio.wait_for(producer.start(), settings.publish_timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            await producer.stop()
            raise ConfigurationError(
                f"cannot reach the Kafka broker at {settings.kafka_bootstrap} within "
                f"{settings.publish_timeout:g}s ({type(exc).__name__}); start `tripwire dev` "
                "or check TRIPWIRE_KAFKA_BOOTSTRAP."
            ) from None
        try:
            return await action(
                RunService(settings, store, ObjectStore(settings.objects_root), producer)
            )
        finally:
            await producer.stop()

    return await with_store(act)


Params = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Parameter key=value (JSON or string); repeatable."),
]


@runs_app.command("create")
def runs_create(
    flow: Annotated[
        str, typer.Argument(help="A deployed flow's name.", autocompletion=complete_flow)
    ],
    param: Params = None,
    name: Annotated[
        str | None, typer.Option(help="Run name (default: generated); the same name is one run.")
    ] = None,
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a run of a deployed flow with the given parameters."""
    run, created = run_sync(
        _with_service(
            lambda service: service.create(
                flow,
                parse_pairs(param or []),
                name=name,
                **scope(project, domain),
            )
        )
    )
    if as_json:
        out.print_json(json.dumps({**run.model_dump(mode="json"), "created": created}))
    elif created:
        out.print(f"run {run.name} {run.phase.value}; inputs at {run.inputs_uri}")
    else:
        out.print(f"run {run.name} already exists ({run.phase.value}); nothing started")


@runs_app.command("recover")
def runs_recover(
    name: RunName,
    param: Params = None,
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a finished run again as NAME-r1 (-r2 ...) with its inputs and flow revision."""
    run = run_sync(
        _with_service(
            lambda service: service.recover(
                name,
                **scope(project, domain),
                parameters=parse_pairs(param) if param else None,
            )
        )
    )
    if as_json:
        out.print_json(json.dumps(run.model_dump(mode="json")))
    else:
        out.print(f"run {run.name} {run.phase.value}: recovers {name}")


@runs_app.command("list")
def runs_list(
    project: ProjectOption = None,
    domain: DomainOption = None,
    flow: Annotated[
        str | None, typer.Option(help="Only runs of this flow.", autocompletion=complete_flow)
    ] = None,
    phase: Annotated[
        str | None, typer.Option(help="Only runs in these phases, e.g. FAILED,TIMED_OUT.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only runs created since: an ISO 8601 time, or a duration (90m, 1d)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    from sensors.queries.runs import parse_since

    phases = parse_phase(phase) if phase else None
    try:
        after = parse_since(since, datetime.now(UTC)) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    runs = run_sync(
        with_store(
            lambda store: store.list_runs(
                **scope(project, domain),
                flow=flow,
                phase=phases,
                since=after,
                limit=limit,
            )
        )
    )
    render.print_runs(out, runs, as_json=as_json)


@runs_app.command("get")
def runs_get(
    name: RunName,
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one run: phase, parameters, events, attempts, phase history and error."""
    from sensors.queries.runs import run_detail

    detail = run_sync(
        with_store(
            lambda store: run_detail(
                store,
                name,
                **scope(project, domain),
            )
        )
    )
    render.print_run(out, detail, as_json=as_json)


@runs_app.command("logs")
def runs_logs(
    name: RunName,
    tail: Annotated[int, typer.Option(help="Only the last N lines (0: all).")] = 0,
    project: ProjectOption = None,
    domain: DomainOption = None,
) -> None:
    """Print a run's log (its process output, or its HTTP calls) from this machine."""
    from sensors.launchers.base import REMOTE_FAMILIES, family_of
    from sensors.queries.runs import run_detail

    detail = run_sync(with_store(lambda store: run_detail(store, name, **scope(project, domain))))
    run = detail.run
    if family_of(run.target) in REMOTE_FAMILIES:
        pages = ", ".join(f"{entry.name} {entry.uri}" for entry in detail.logs)
        fail(
            f"run {name} ran on {run.target}, not on this machine",
            f"read its logs there: {pages}" if pages else "no attempt has started there yet",
        )
    for entry in detail.logs:
        where = urlsplit(entry.uri)
        if where.scheme != "file":
            namespace = where.netloc
            tool = "kubectl logs -n" if where.scheme == "k8s" else "argo logs -n"
            kind = "job/" if where.scheme == "k8s" else ""
            fail(
                f"run {name} ran in the cluster ({entry.name} {entry.uri})",
                f"read its logs with `{tool} {namespace} {kind}{run.name}` (later attempts: "
                f"{run.name}-a2 ...)",
            )
        path = Path(where.path)
        if not path.exists():
            fail(
                f"no log at {path}: the run has not started, or ran on another machine",
                "wait for it to start, or set TRIPWIRE_HOME to the worker's",
            )
        lines = path.read_text(errors="replace").splitlines()
        for line in lines[-tail:] if tail else lines:
            out.print(line, markup=False, highlight=False)


@runs_app.command("abort")
def runs_abort(
    name: RunName,
    cause: Annotated[str, typer.Option(help="Why, recorded with the run.")] = "aborted by user",
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Abort a run: a queued one at once, a running one through ABORTING.

    Its worker stops the run's process tree. A run that already ended is left as it is.
    """
    run, changed = run_sync(
        with_store(lambda store: store.request_abort(*scope(project, domain).values(), name, cause))
    )
    if as_json:
        out.print_json(json.dumps({"run": run.model_dump(mode="json"), "changed": changed}))
    elif changed:
        out.print(f"run {run.name} is {run.phase.value}: {cause}")
    else:
        out.print(f"run {run.name} is already {run.phase.value}; nothing to abort")


def parse_phase(text: str) -> list[WorkflowPhase]:
    """``FAILED`` or ``failed,aborted`` into phases, or a usage error listing the valid ones."""
    from sensors.runs.phases import WorkflowPhase

    phases = []
    for part in text.split(","):
        try:
            phases.append(WorkflowPhase(part.strip().upper()))
        except ValueError:
            valid = ", ".join(p.value for p in WorkflowPhase)
            raise typer.BadParameter(
                f"unknown phase {part!r}; use one of {valid}", param_hint="--phase"
            ) from None
    return phases

"""The ``tripwire`` command line. Commands only translate; the work is elsewhere."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from sensors import views
from triggers.errors import ConfigurationError, TripwireError
from triggers.publish import publish as publish_event
from triggers.settings import Settings, get_settings

T = TypeVar("T")

app = typer.Typer(
    name="tripwire",
    help="Event-driven workflow triggers: publish events, correlate them, launch runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="Create, inspect, abort and recover runs.", no_args_is_help=True)
sensors_app = typer.Typer(help="Inspect deployed sensors.", no_args_is_help=True)
projects_app = typer.Typer(help="Create and list projects.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(sensors_app, name="sensors")
app.add_typer(projects_app, name="projects")

# Piped output is read by scripts and greps: no wrapping or truncation at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
FlowPaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Flow files or folders to load (folders are searched recursively)."),
]


def _settings() -> Settings:
    try:
        return get_settings()
    except TripwireError:
        raise
    except Exception as exc:  # pydantic names the bad TRIPWIRE_* variable
        raise typer.BadParameter(f"invalid TRIPWIRE_* settings: {exc}") from exc


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning tripwire errors into a one-line message and exit code 1."""
    try:
        return asyncio.run(coro)
    except TripwireError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiokafka", "kafka", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def dev(
    paths: FlowPaths = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run everything on this machine: embedded broker, one worker, SQLite store."""
    from sensors.dev import run_dev

    _logging(verbose)
    _run(run_dev(paths or [Path(".")], _settings(), on_ready=views.print_dev_banner))


@app.command()
def worker(
    paths: FlowPaths = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run one engine worker against TRIPWIRE_KAFKA_BOOTSTRAP and TRIPWIRE_DATABASE_URL."""
    from sensors.dev import serve
    from sensors.engine import Engine
    from sensors.registry import discover_flows

    _logging(verbose)
    settings = _settings()

    async def main() -> None:
        settings.require_bootstrap()
        flows = discover_flows(paths or [Path(".")])
        async with Engine(settings, flows) as engine:
            await engine.wait_ready()
            err.print(
                f"[green]worker ready[/green]: {len(flows)} flows, broker "
                f"{settings.kafka_bootstrap}"
            )
            await serve(engine)

    _run(main())


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 9092,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) in the foreground."""
    from sensors.broker import run_broker

    def ready(bootstrap: str) -> None:
        err.print(f"[green]broker ready[/green] at {bootstrap} (in memory; Ctrl-C stops it)")

    try:
        code = run_broker(host=host, port=port, ready=ready)
    except TripwireError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs into a payload; values are JSON when they parse, else strings."""
    payload: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value, e.g. -p rows=42", param_hint="-p")
        try:
            payload[key] = json.loads(raw)
        except ValueError:
            payload[key] = raw
    return payload


@app.command()
def publish(
    name: Annotated[str, typer.Argument(help="Event name, e.g. data_updated.")],
    payload: Annotated[
        str | None, typer.Option("--payload", help="Payload as a JSON object.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Payload field key=value (JSON or string); repeatable."),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="Event id (default: a uuid).")
    ] = None,
    time: Annotated[
        str | None, typer.Option("--time", help="Event time, ISO 8601 (default: now).")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="CloudEvent source.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish an event and print its id."""
    body: dict[str, Any] = {}
    if payload is not None:
        try:
            body = json.loads(payload)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
        if not isinstance(body, dict):
            raise typer.BadParameter(
                "the payload must be a JSON object, e.g. '{\"rows\": 42}'", param_hint="--payload"
            )
    body.update(parse_pairs(param or []))
    try:
        event = publish_event(name, body, id=event_id, time=time, source=source)
    except TripwireError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        out.print_json(json.dumps({"id": event, "name": name}))
    else:
        out.print(event)


async def _with_store(action: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    from sensors.runs.store import RunStore

    settings = _settings()
    async with await RunStore.open(settings.store_url) as store:
        return await action(store)


ProjectOption = Annotated[
    str | None, typer.Option(help="Project (default: TRIPWIRE_PROJECT, else 'default').")
]
DomainOption = Annotated[
    str | None, typer.Option(help="Domain (default: TRIPWIRE_DOMAIN, else 'development').")
]
RunName = Annotated[str, typer.Argument(help="Run name, as `tripwire runs list` shows it.")]


@app.command()
def deploy(
    paths: Annotated[list[Path], typer.Argument(help="Flow files or folders to deploy.")],
    project: ProjectOption = None,
    domain: DomainOption = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Retire deployed flows that are not in PATHS.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Register the flows in PATHS and their triggers, in one transaction.

    The same content again changes nothing; a changed flow gets a new revision and
    the old one is retired. Running workers pick the changes up.
    """
    from sensors.registry import discover_flows
    from sensors.runs.deploy import deploy as deploy_flows

    settings = _settings()

    async def main(store: Any) -> Any:
        specs = discover_flows(paths)
        return await deploy_flows(
            store,
            specs,
            project=project or settings.project,
            domain=domain or settings.domain,
            prune=prune,
        )

    try:
        done = _run(_with_store(main))
    except TripwireError as exc:  # a bad declaration, raised while importing the files
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    views.print_deployment(out, done, as_json=as_json)


@projects_app.command("create")
def projects_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and '-'; up to 63.")],
    description: Annotated[str, typer.Option(help="What the project is for.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create a project (deploying to one creates it too)."""
    from sensors.runs.deploy import create_project

    project, created = _run(_with_store(lambda store: create_project(store, name, description)))
    if as_json:
        out.print_json(json.dumps({**project.model_dump(mode="json"), "created": created}))
    else:
        out.print(f"project {name} {'created' if created else 'already exists'}")


@projects_app.command("list")
def projects_list(as_json: JsonOption = False) -> None:
    """List projects."""
    from sensors.runs.deploy import list_projects

    projects = _run(_with_store(list_projects))
    views.print_projects(out, projects, as_json=as_json)


async def _with_service(action: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    from aiokafka.errors import KafkaError

    from sensors.kafka import new_producer
    from sensors.runs.objects import ObjectStore
    from sensors.runs.service import RunService

    settings = _settings()
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

    return await _with_store(act)


Params = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Parameter key=value (JSON or string); repeatable."),
]


@runs_app.command("create")
def runs_create(
    flow: Annotated[str, typer.Argument(help="A deployed flow's name.")],
    param: Params = None,
    name: Annotated[
        str | None, typer.Option(help="Run name (default: generated); the same name is one run.")
    ] = None,
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a run of a deployed flow with the given parameters."""
    settings = _settings()
    run, created = _run(
        _with_service(
            lambda service: service.create(
                flow,
                parse_pairs(param or []),
                name=name,
                project=project or settings.project,
                domain=domain or settings.domain,
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
    settings = _settings()
    run = _run(
        _with_service(
            lambda service: service.recover(
                name,
                project=project or settings.project,
                domain=domain or settings.domain,
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
    flow: Annotated[str | None, typer.Option(help="Only runs of this flow.")] = None,
    phase: Annotated[
        str | None, typer.Option(help="Only runs in these phases, e.g. FAILED,TIMED_OUT.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only runs created since: an ISO 8601 time, or a duration (90m, 1d)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    settings = _settings()
    phases = views.parse_phase(phase) if phase else None
    after = views.parse_since(since, datetime.now(UTC)) if since else None
    runs = _run(
        _with_store(
            lambda store: store.list_runs(
                project=project or settings.project,
                domain=domain or settings.domain,
                flow=flow,
                phase=phases,
                since=after,
                limit=limit,
            )
        )
    )
    views.print_runs(out, runs, as_json=as_json)


@runs_app.command("get")
def runs_get(
    name: RunName,
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one run: phase, parameters, events, attempts, phase history and error."""
    settings = _settings()
    detail = _run(
        _with_store(
            lambda store: views.run_detail(
                store,
                name,
                project=project or settings.project,
                domain=domain or settings.domain,
            )
        )
    )
    views.print_run(out, detail, as_json=as_json)


@runs_app.command("abort")
def runs_abort(
    name: RunName,
    cause: Annotated[str, typer.Option(help="Why, recorded with the run.")] = "aborted by user",
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Abort a run: a queued one at once; a running one through ABORTING, its process
    tree stopped by its worker. A run that already ended is left as it is."""
    settings = _settings()
    run, changed = _run(
        _with_store(
            lambda store: store.request_abort(
                project or settings.project, domain or settings.domain, name, cause
            )
        )
    )
    if as_json:
        out.print_json(json.dumps({"run": run.model_dump(mode="json"), "changed": changed}))
    elif changed:
        out.print(f"run {run.name} is {run.phase.value}: {cause}")
    else:
        out.print(f"run {run.name} is already {run.phase.value}; nothing to abort")


@sensors_app.command("list")
def sensors_list(as_json: JsonOption = False) -> None:
    """List deployed sensors and the events they wait for."""
    settings = _settings()
    sensors = _run(
        _with_store(
            lambda store: store.list_sensors(project=settings.project, domain=settings.domain)
        )
    )
    views.print_sensors(out, sensors, as_json=as_json)


@sensors_app.command("status")
def sensors_status(
    sensor: Annotated[str | None, typer.Argument(help="One sensor id (flow.trigger).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show each sensor's last run and its recent trigger failures, with reasons."""
    settings = _settings()

    async def gather(store: Any) -> list[views.SensorStatus]:
        return await views.sensor_statuses(
            store, project=settings.project, domain=settings.domain, only=sensor
        )

    statuses = _run(_with_store(gather))
    views.print_statuses(out, statuses, as_json=as_json)


def main() -> None:
    app()

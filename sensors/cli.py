"""The ``tripwire`` command line. Commands only translate; the work is elsewhere."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from sensors import explain, views
from triggers.errors import TripwireError
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
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
FlowPaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Flow files or folders to load (folders are searched recursively)."),
]


def cli_settings() -> Settings:
    try:
        return get_settings()
    except TripwireError:
        raise
    except Exception as exc:  # pydantic names the bad TRIPWIRE_* variable
        raise typer.BadParameter(f"invalid TRIPWIRE_* settings: {exc}") from exc


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
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
    for noisy in ("aiokafka", "kafka", "alembic", "aio_pika", "aiormq", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def dev(
    paths: FlowPaths = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run everything on this machine: embedded broker, one worker, SQLite store."""
    from sensors.dev import run_dev

    _logging(verbose)
    run_sync(run_dev(paths or [Path(".")], cli_settings(), on_ready=views.print_dev_banner))


@app.command()
def worker(
    paths: FlowPaths = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run one engine worker against TRIPWIRE_KAFKA_BOOTSTRAP and TRIPWIRE_DATABASE_URL."""
    from sensors.dev import serve
    from sensors.engine import Engine
    from sensors.registry import discover

    _logging(verbose)
    settings = cli_settings()

    async def main() -> None:
        settings.require_bootstrap()
        flows, sources = discover(paths or [Path(".")])
        async with Engine(settings, flows, sources=sources) as engine:
            await engine.wait_ready()
            err.print(
                f"[green]worker ready[/green]: {len(flows)} flows, broker "
                f"{settings.kafka_bootstrap}"
            )
            await serve(engine)

    run_sync(main())


api_app = typer.Typer(
    help="Serve the HTTP API and web page; `tripwire api token` makes tokens.",
    invoke_without_command=True,
)
app.add_typer(api_app, name="api")


@api_app.callback()
def api(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address (default TRIPWIRE_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TRIPWIRE_API_PORT).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the HTTP API and web page against TRIPWIRE_KAFKA_BOOTSTRAP and the run store."""
    if ctx.invoked_subcommand is not None:
        return
    from sensors.api import ApiServer
    from sensors.dev import serve_until_signal

    _logging(verbose)
    settings = cli_settings()
    overrides = {k: v for k, v in {"api_host": host, "api_port": port}.items() if v is not None}
    settings = settings.model_copy(update=overrides)

    async def main() -> None:
        settings.require_bootstrap()
        server = ApiServer(settings)
        url = await server.start()
        err.print(f"[green]api ready[/green] at {url} (web page {url}/, OpenAPI {url}/docs)")
        await serve_until_signal(server.wait(), server.stop)

    run_sync(main())


@api_app.command("token")
def api_token(
    scope: Annotated[str, typer.Option(help="publish, read or admin.")] = "publish",
    name: Annotated[str, typer.Option(help="Who uses it (logs and metrics).")] = "client",
    events: Annotated[
        list[str] | None, typer.Option("--events", help="Event-name prefix it may publish.")
    ] = None,
    projects: Annotated[
        list[str] | None, typer.Option("--projects", help="A project it may use.")
    ] = None,
) -> None:
    """Make a token: print it once, and the entry (with its hash only) for TRIPWIRE_API_TOKENS."""
    from sensors.api.auth import hash_token, new_token
    from triggers.settings import ApiToken

    if scope not in ("publish", "read", "admin"):
        raise typer.BadParameter(f"scope must be publish, read or admin, not {scope!r}")
    token = new_token()
    entry = ApiToken(
        name=name,
        hash=hash_token(token),
        scope=scope,
        events=events or [],
        projects=projects or [],
    )
    out.print(f"token  {token}")
    out.print(f"entry  {entry.model_dump_json()}")
    err.print("Keep the token secret; give the entry to the API in TRIPWIRE_API_TOKENS (a list).")


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


async def with_store(action: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    from sensors.runs.store import RunStore

    settings = cli_settings()
    async with await RunStore.open(settings.store_url) as store:
        return await action(store)


@sensors_app.command("list")
def sensors_list(as_json: JsonOption = False) -> None:
    """List deployed sensors and the events they wait for."""
    settings = cli_settings()
    sensors = run_sync(
        with_store(
            lambda store: store.list_sensors(project=settings.project, domain=settings.domain)
        )
    )
    explain.print_sensors(out, sensors, as_json=as_json)


@sensors_app.command("status")
def sensors_status(
    sensor: Annotated[str | None, typer.Argument(help="One sensor id (flow.trigger).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show each sensor's last run and its recent trigger failures, with reasons."""
    settings = cli_settings()

    async def gather(store: Any) -> list[explain.SensorStatus]:
        return await explain.sensor_statuses(
            store, project=settings.project, domain=settings.domain, only=sensor
        )

    statuses = run_sync(with_store(gather))
    explain.print_statuses(out, statuses, as_json=as_json)


def main() -> None:
    app()


# The runs, projects, deploy, events and sources commands live in their own modules; importing
# them registers them on `app` (they import the helpers above from here).
from sensors import cli_events, cli_runs, cli_sources  # noqa: E402, F401

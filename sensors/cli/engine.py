"""``tripwire dev``, ``worker``, ``api`` and ``broker``: the commands that run the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sensors.cli import banner
from sensors.cli.base import (
    FlowPaths,
    VerboseOption,
    cli_settings,
    configure_logging,
    err,
    out,
    run_sync,
)

__all__ = ["api_app", "broker", "dev", "worker"]

api_app = typer.Typer(
    help="Serve the HTTP API and web page; `tripwire api token` makes tokens.",
    invoke_without_command=True,
)


def dev(
    paths: FlowPaths = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "--api-port",
            min=0,
            max=65535,
            help="Port of the API and web page (default TRIPWIRE_API_PORT, 8080; if that is "
            "busy, any free one, written to dev.json). 0: any free port.",
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run everything on this machine: embedded broker, one worker, SQLite store.

    Edits of the flow files are followed: a saved, new or deleted file is loaded again and
    deployed, and each change is told in one line. A file that fails to import is reported
    and left out; the others are served.
    """
    # Each command imports the engine it runs, so that `tripwire --help` starts fast.
    from sensors.dev import run_dev

    configure_logging(verbose)
    settings = cli_settings()
    if port is not None:
        settings = settings.model_copy(update={"api_port": port})
    run_sync(
        run_dev(
            paths or [Path(".")],
            settings,
            on_ready=lambda info: banner.print_dev_banner(info, verbose=verbose),
            say=banner.say,
            any_port_if_taken=port is None,
        )
    )


def worker(
    paths: FlowPaths = None,
    verbose: VerboseOption = False,
) -> None:
    """Run one engine worker against TRIPWIRE_KAFKA_BOOTSTRAP and TRIPWIRE_DATABASE_URL."""
    from sensors.dev import serve
    from sensors.engine import Engine
    from sensors.registry import discover

    configure_logging(verbose)
    settings = cli_settings()

    async def main() -> None:
        settings.require_bootstrap()
        flows, sources = discover(paths or [Path(".")], outcome="the worker did not start")
        async with Engine(settings, flows, sources=sources) as engine:
            await engine.wait_ready()
            err.print(
                f"[green]worker ready[/green]: {len(flows)} flows, broker "
                f"{settings.kafka_bootstrap}"
            )
            await serve(engine)

    run_sync(main())


@api_app.callback()
def api(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address (default TRIPWIRE_API_HOST).")] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", "--api-port", min=0, max=65535, help="Port (default TRIPWIRE_API_PORT)."
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve the HTTP API and web page against TRIPWIRE_KAFKA_BOOTSTRAP and the run store."""
    if ctx.invoked_subcommand is not None:
        return
    from sensors.api import ApiServer
    from sensors.dev import serve_until_signal

    configure_logging(verbose)
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
        raise typer.BadParameter(
            f"{scope!r} is not a scope; use publish, read or admin", param_hint="--scope"
        )
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


def broker(
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 9092,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) in the foreground."""
    from sensors.broker import run_broker

    def ready(bootstrap: str) -> None:
        err.print(f"[green]broker ready[/green] at {bootstrap} (in memory; Ctrl-C stops it)")

    raise typer.Exit(run_broker(host=host, port=port, ready=ready))

"""``tripwire sources list|status|run``: the deployed event sources and how they are doing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sensors.cli.base import (
    FlowPaths,
    JsonOption,
    VerboseOption,
    cli_settings,
    configure_logging,
    err,
    fail,
    out,
    run_sync,
    with_store,
)

if TYPE_CHECKING:
    from sensors.sources.store import SourceStatus
    from triggers.sources import EventSource

sources_app = typer.Typer(
    help="Event sources: list them, see how they do, or run them on their own.",
    no_args_is_help=True,
)

# A process reports every 2 s; one silent for this long is probably gone.
_SILENT = timedelta(seconds=30)


@sources_app.command("list")
def sources_list(as_json: JsonOption = False) -> None:
    """List the deployed event sources: bus, where they read, the event they make."""
    # Here, not at the top: the sources' store costs start-up time that `tripwire --help`
    # need not pay.
    from sensors.sources.store import deployed_sources
    from triggers.sources import shown_url

    settings = cli_settings()
    found = run_sync(
        with_store(
            lambda store: deployed_sources(store, project=settings.project, domain=settings.domain)
        )
    )
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        **spec.model_dump(mode="json", exclude_defaults=True),
                        "url": shown_url(spec.url),
                        "kind": spec.kind,
                        "revision": revision,
                    }
                    for spec, revision in found
                ]
            )
        )
        return
    if not found:
        out.print(
            f"no event sources deployed to {settings.project}/{settings.domain}; "
            "`tripwire deploy sources.yaml` deploys some"
        )
        return
    table = Table("NAME", "BUS", "READS", "EVENT", "URL", "REV", box=None)
    for spec, revision in found:
        reads = spec.address + (
            f" (JetStream {spec.stream})" if spec.kind == "nats" and spec.stream else ""
        )
        table.add_row(spec.name, spec.kind, reads, spec.event, shown_url(spec.url), str(revision))
    out.print(table)


@sources_app.command("status")
def sources_status(
    source: Annotated[str | None, typer.Argument(help="One source's name.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show each source's connection state, messages in and out, and last error.

    One row per source and process that runs it; a deployed source that no process
    reports says `not running`.
    """
    from sensors.sources.store import deployed_sources, list_source_status

    settings = cli_settings()

    async def gather(store: Any) -> tuple[list[tuple[EventSource, int]], list[SourceStatus]]:
        project, domain = settings.project, settings.domain
        return (
            await deployed_sources(store, project=project, domain=domain),
            await list_source_status(store, project=project, domain=domain),
        )

    deployed, reports = run_sync(with_store(gather))
    if source is not None:
        if source not in {spec.name for spec, _ in deployed}:
            names = ", ".join(spec.name for spec, _ in deployed) or "none"
            fail(f"no deployed source {source!r}", f"the deployed ones are: {names}")
        deployed = [(spec, rev) for spec, rev in deployed if spec.name == source]
    print_status(out, deployed, reports, as_json=as_json, now=datetime.now(UTC))


def print_status(
    console: Console,
    deployed: Sequence[tuple[EventSource, int]],
    reports: Sequence[SourceStatus],
    *,
    as_json: bool,
    now: datetime,
) -> None:
    """The status table: a row per source and process; a deployed source nobody runs says so."""
    rows: list[dict[str, Any]] = []
    for spec, revision in deployed:
        mine = [r for r in reports if r.source == spec.name and r.revision == revision]
        mine = [r for r in mine if r.state != "stopped" or now - r.updated_at < _SILENT]
        if not mine:
            rows.append({"source": spec.name, "instance": None, "state": "not running"})
        for report in mine:
            state = report.state
            if state != "stopped" and now - report.updated_at > _SILENT:
                state = f"silent since {report.updated_at:%H:%M:%S}"
            rows.append(
                {
                    "source": spec.name,
                    "instance": report.instance,
                    "state": state,
                    "since": report.since.isoformat(),
                    "messages_in": report.messages_in,
                    "events_out": report.events_out,
                    "filtered": report.filtered,
                    "dead_lettered": report.dead_lettered,
                    "last_error": report.last_error,
                    "last_error_at": report.last_error_at.isoformat()
                    if report.last_error_at
                    else None,
                    "updated_at": report.updated_at.isoformat(),
                }
            )
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("no event sources deployed")
        return
    table = Table(
        "SOURCE", "PROCESS", "STATE", "IN", "OUT", "FILTERED", "DEAD", "LAST ERROR", box=None
    )
    for row in rows:
        if row["instance"] is None:
            table.add_row(
                row["source"], "-", "[yellow]not running[/yellow] (no worker reports it)", *"-----"
            )
            continue
        state = row["state"]
        colour = {"connected": "green", "standby": "cyan"}.get(state, "yellow")
        error = row["last_error"] or ""
        if row["last_error_at"]:
            error = f"{row['last_error_at'][11:19]} {error}"
        table.add_row(
            row["source"],
            row["instance"],
            f"[{colour}]{state}[/{colour}]",
            str(row["messages_in"]),
            str(row["events_out"]),
            str(row["filtered"]),
            str(row["dead_lettered"]),
            error,
        )
    console.print(table)


@sources_app.command("run")
def sources_run(
    paths: FlowPaths = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the deployed event sources in this process (no sensors, no launcher).

    PATHS, when given, are deployed first (their sources only). Workers started with
    TRIPWIRE_SOURCES=false leave the sources to processes like this one.
    """
    from sensors.dev import serve_until_signal
    from sensors.registry import discover_sources
    from sensors.runs.store import RunStore
    from sensors.sources import SourceSupervisor
    from sensors.sources.store import deploy_sources
    from sensors.stages.kafka import ensure_topics, new_producer

    configure_logging(verbose)
    settings = cli_settings()

    async def main() -> None:
        settings.require_bootstrap()
        sources = discover_sources(paths) if paths else []
        async with await RunStore.open(settings.store_url) as store:
            if sources:
                await deploy_sources(
                    store, sources, project=settings.project, domain=settings.domain
                )
            await ensure_topics(settings, [settings.topic_events, settings.topic_dead_letter])
            producer = new_producer(settings)
            await producer.start()
            try:
                supervisor = SourceSupervisor(settings, store, producer)
                stop = asyncio.Event()

                async def stopping() -> None:
                    stop.set()

                err.print(
                    f"[green]sources ready[/green]: {settings.project}/{settings.domain}, "
                    f"broker {settings.kafka_bootstrap}"
                )
                await serve_until_signal(supervisor.run(stop), stopping)
            finally:
                await producer.stop()

    run_sync(main())

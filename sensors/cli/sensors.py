"""``tripwire sensors list|status``: the deployed sensors, and what each waits for and holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sensors.cli import render
from sensors.cli.base import (
    JsonOption,
    cli_settings,
    complete_sensor,
    err,
    out,
    run_sync,
    with_store,
)

if TYPE_CHECKING:
    from sensors.queries.sensors import SensorStatus
    from sensors.runs.import_problems import ImportProblem
    from sensors.runs.models import DeployedSensor

__all__ = ["sensors_app"]

sensors_app = typer.Typer(help="Inspect deployed sensors.", no_args_is_help=True)


@sensors_app.command("list")
def sensors_list(as_json: JsonOption = False) -> None:
    """List deployed sensors and the events they wait for, and the flow files that failed
    to import."""
    # Here, not at the top: the run store costs start-up time that `tripwire --help` need not pay.
    from sensors.runs.import_problems import import_problems
    from sensors.runs.sensor_records import list_sensors

    settings = cli_settings()
    where = {"project": settings.project, "domain": settings.domain}

    async def gather(store: Any) -> tuple[list[DeployedSensor], list[ImportProblem]]:
        return await list_sensors(store, **where), await import_problems(store, **where)

    sensors, problems = run_sync(with_store(gather))
    render.print_sensors(out, sensors, as_json=as_json)
    # With --json on stderr, so that stdout stays the list of sensors.
    render.print_import_problems(err if as_json else out, problems)


@sensors_app.command("status")
def sensors_status(
    sensor: Annotated[
        str | None,
        typer.Argument(
            help="One sensor id (flow.trigger), or a flow's name for all its sensors.",
            autocompletion=complete_sensor,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show each sensor's last run and its recent trigger failures, with reasons."""
    from sensors.queries.sensors import sensor_statuses

    settings = cli_settings()

    async def gather(store: Any) -> list[SensorStatus]:
        return await sensor_statuses(
            store, project=settings.project, domain=settings.domain, only=sensor
        )

    statuses = run_sync(with_store(gather))
    render.print_statuses(out, statuses, as_json=as_json)

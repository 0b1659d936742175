"""The ``tripwire`` command line.

:mod:`sensors.cli.base` holds what every command shares; each other module is one group
of commands, and imports only ``base`` (and the read models and rendering it needs).
This module puts the groups together into one app, so no module registers commands on
another by being imported.
"""

from __future__ import annotations

import logging

import typer

from sensors.cli import engine, events, imports, runs, sensors, sources
from sensors.cli.base import OneLineErrors

__all__ = ["app", "main"]

app = typer.Typer(
    name="tripwire",
    help="Event-driven workflow triggers: publish events, correlate them, launch runs.",
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for command in (engine.dev, engine.worker, engine.broker, events.publish, runs.deploy):
    app.command()(command)
app.add_typer(engine.api_app, name="api")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(sensors.sensors_app, name="sensors")
app.add_typer(runs.projects_app, name="projects")
app.add_typer(events.events_app, name="events")
app.add_typer(sources.sources_app, name="sources")
app.add_typer(imports.import_app, name="import")


def main() -> None:
    # A client's own retries are not the user's business: the error says what failed.
    # The commands that run the engine log them again (base.configure_logging).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    app()

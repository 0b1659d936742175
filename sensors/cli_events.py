"""``tripwire events list|signal``: the events runs wait for, and signalling them.

Registered on the ``tripwire`` app of :mod:`sensors.cli` when that module is
imported. Signals go to the run store, so they work while no worker runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from sensors.cli import JsonOption, app, err, out, run_sync, with_store
from sensors.cli_runs import DomainOption, ProjectOption, scope
from sensors.runs.signals import (
    EXAMPLES,
    Signal,
    give_signal,
    list_signals,
    parse_value,
    waiting_for,
)
from sensors.views import when

events_app = typer.Typer(
    help="The events runs wait for (wait_for_event), and signalling them.",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events")

RunOption = Annotated[str, typer.Option("--run", help="The run's name (`tripwire runs list`).")]
ActionOption = Annotated[
    str | None, typer.Option("--action", help="The part of the run that waits, if it named one.")
]


@events_app.command("list")
def events_list(
    run: RunOption,
    action: ActionOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the events a run waits (or waited) for: phase, type and signalled value."""
    where = scope(project, domain)

    async def gather(store: Any) -> list[Signal]:
        await store.get_run(run, **where)  # an unknown run is an error, not an empty list
        return await list_signals(store, **where, run_name=run, action_name=action, limit=limit)

    signals = run_sync(with_store(gather))
    if as_json:
        out.print_json(json.dumps([s.model_dump(mode="json") for s in signals]))
        return
    if not signals:
        out.print(f"run {run} waits for no events")
        return
    table = Table("EVENT", "ACTION", "PHASE", "TYPE", "VALUE", "SINCE", "TIMEOUT", box=None)
    for s in signals:
        value = json.dumps(s.value) if s.phase == "SUCCEEDED" else "-"
        table.add_row(
            s.name,
            s.action_name or "-",
            s.phase.value,
            s.expected_type,
            value,
            when(s.created_at),
            when(s.timeout_at),
        )
    out.print(table)


@events_app.command("signal")
def events_signal(
    name: Annotated[str, typer.Argument(help="The event the run waits for.")],
    run: RunOption,
    value: Annotated[
        str, typer.Option("--value", help="The value: true/false, a number or text, by its type.")
    ],
    action: ActionOption = None,
    project: ProjectOption = None,
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Signal a waiting run: it gets VALUE, parsed as the type it waits for."""
    where = scope(project, domain)

    async def give(store: Any) -> Signal:
        await store.get_run(run, **where)
        waiting = await waiting_for(store, **where, run_name=run, name=name, action_name=action)
        parsed = _parse(value, waiting.expected_type, name)
        return await give_signal(
            store, **where, run_name=run, name=name, action_name=action, value=parsed
        )

    signal = run_sync(with_store(give))
    if as_json:
        out.print_json(signal.model_dump_json())
    else:
        out.print(f"signalled {name}={json.dumps(signal.value)} to run {run}")


def _parse(text: str, expected_type: str, name: str) -> bool | int | float | str:
    try:
        return parse_value(text, expected_type)
    except ValueError as exc:
        example = EXAMPLES[expected_type]
        err.print(
            f"[red]error:[/red] event {name!r} {exc}".replace(
                f"e.g. {example}", f"e.g. --value {example}"
            )
        )
        raise typer.Exit(2) from None

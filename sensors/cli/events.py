"""``tripwire publish`` and ``tripwire events list|signal|dead-letter``: publishing events,
the events runs wait for and signalling them, and the records of the events topic that
were not events.

Signals go to the run store, so they work while no worker runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sensors.cli.base import (
    DomainOption,
    JsonOption,
    ProjectOption,
    cli_settings,
    complete_event,
    complete_run,
    fail,
    out,
    parse_pairs,
    run_sync,
    scope,
    with_store,
)
from sensors.queries.times import when

if TYPE_CHECKING:
    from sensors.stages.deadletter import DeadLetter
    from triggers.waits import Signal


def publish(
    name: Annotated[
        str, typer.Argument(help="Event name, e.g. data_updated.", autocompletion=complete_event)
    ],
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
    # Imported in each command, not at the top: the run store, the dead letters' Kafka
    # client and even the SDK cost start-up time that `tripwire --help` should not pay.
    from triggers.publish import publish as publish_event

    body: dict[str, Any] = {}
    if payload is not None:
        try:
            body = json.loads(payload)
        except ValueError as exc:
            raise typer.BadParameter(
                f"not JSON ({exc}); give a JSON object, e.g. '{{\"rows\": 42}}'",
                param_hint="--payload",
            ) from None
        if not isinstance(body, dict):
            raise typer.BadParameter(
                "not a JSON object; give one, e.g. '{\"rows\": 42}'", param_hint="--payload"
            )
    body.update(parse_pairs(param or []))
    event = publish_event(name, body, id=event_id, time=time, source=source)
    if as_json:
        out.print_json(json.dumps({"id": event, "name": name}))
    else:
        out.print(event)


events_app = typer.Typer(
    help="The events runs wait for (wait_for_event), and signalling them.",
    no_args_is_help=True,
)

RunOption = Annotated[
    str,
    typer.Option(
        "--run", help="The run's name (`tripwire runs list`).", autocompletion=complete_run
    ),
]
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
    from sensors.runs.signals import list_signals

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
    from sensors.runs.signals import give_signal, waiting_for

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
    from triggers.waits import EXAMPLES, parse_value

    try:
        return parse_value(text, expected_type)
    except ValueError as exc:
        example = EXAMPLES[expected_type]
        fail(f"event {name!r} {exc}".replace(f"e.g. {example}", f"e.g. --value {example}"), code=2)


dead_app = typer.Typer(
    help="Records of the events topic that are not events, kept with the reason.",
    no_args_is_help=True,
)
events_app.add_typer(dead_app, name="dead-letter")


@dead_app.command("list")
def dead_letter_list(
    limit: Annotated[int, typer.Option(min=1, help="The newest this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List dead letters: when, why, and where each came from."""
    from sensors.stages.deadletter import read_dead_letters

    letters = run_sync(read_dead_letters(cli_settings(), limit))
    if as_json:
        out.print_json(json.dumps([_letter_json(d) for d in letters]))
        return
    if not letters:
        out.print("no dead letters")
        return
    table = Table("OFFSET", "DEAD AT", "FROM", "BYTES", "REASON", box=None)
    for d in letters:
        size = f"{d.size} (cut)" if d.truncated else str(d.size)
        table.add_row(
            str(d.offset),
            d.dead_at[:19],
            d.topic
            if d.topic.startswith("source:")
            else f"{d.topic}[{d.partition}]@{d.source_offset}",
            size,
            d.reason,
        )
    out.print(table)


@dead_app.command("replay")
def dead_letter_replay(
    offsets: Annotated[
        list[int] | None, typer.Option("--offset", help="A dead letter to send back (repeat).")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every dead letter listed.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="With --all: the newest this many.")] = 100,
) -> None:
    """Send dead letters back to the topic they came from, once their cause is fixed.

    A record that still does not decode becomes a dead letter again. One cut for size
    cannot be replayed (its value is not whole).
    """
    from sensors.stages.deadletter import read_dead_letters, replay

    if not offsets and not replay_all:
        fail(
            "no dead letters named", "name them with --offset N (repeatable), or pass --all", code=2
        )
    settings = cli_settings()
    letters = run_sync(read_dead_letters(settings, limit if replay_all else 100_000))
    chosen = letters if replay_all else [d for d in letters if d.offset in set(offsets or ())]
    missing = sorted(set(offsets or ()) - {d.offset for d in chosen})
    if missing:
        fail(
            f"no dead letter at offset(s) {missing}",
            "`tripwire events dead-letter list` shows their offsets",
        )
    sent = run_sync(replay(settings, chosen))
    sourced = sum(1 for d in chosen if d.topic.startswith("source:"))
    cut = len(chosen) - sent - sourced
    out.print(
        f"replayed {sent} dead letter(s)"
        + (f"; {cut} cut for size, not replayed" if cut else "")
        + (
            f"; {sourced} from event sources, not replayed (fix the source's declaration "
            "and publish them on their bus again)"
            if sourced
            else ""
        )
    )


def _letter_json(d: DeadLetter) -> dict[str, Any]:
    return {
        "offset": d.offset,
        "reason": d.reason,
        "topic": d.topic,
        "partition": d.partition,
        "source_offset": d.source_offset,
        "dead_at": d.dead_at,
        "bytes": d.size,
        "truncated": d.truncated,
    }

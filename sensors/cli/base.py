"""What every command of the ``tripwire`` command line shares: the consoles, the shared
options, and running a command's work with its errors turned into one line.

Each command group is a module of its own that imports this one; :mod:`sensors.cli`
puts them together. Commands only translate: the work is elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from triggers.settings import Settings

__all__ = [
    "DomainOption",
    "FlowPaths",
    "JsonOption",
    "ProjectOption",
    "RunName",
    "T",
    "VerboseOption",
    "cli_settings",
    "configure_logging",
    "err",
    "out",
    "parse_pairs",
    "run_sync",
    "scope",
    "with_store",
]

T = TypeVar("T")

# Piped output is read by scripts and greps: no wrapping or truncation at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
FlowPaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Flow files or folders to load (folders are searched recursively)."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v")]
ProjectOption = Annotated[
    str | None, typer.Option(help="Project (default: TRIPWIRE_PROJECT, else 'default').")
]
DomainOption = Annotated[
    str | None, typer.Option(help="Domain (default: TRIPWIRE_DOMAIN, else 'development').")
]
RunName = Annotated[str, typer.Argument(help="Run name, as `tripwire runs list` shows it.")]


def cli_settings() -> Settings:
    # Here, not at the top: any module of triggers loads the whole SDK (0.2 s on 2 cores),
    # which `tripwire --help` does not need (bench/startup.py).
    from triggers.errors import TripwireError
    from triggers.settings import get_settings

    try:
        return get_settings()
    except TripwireError:
        raise
    except Exception as exc:  # pydantic names the bad TRIPWIRE_* variable
        raise typer.BadParameter(f"invalid TRIPWIRE_* settings: {exc}") from exc


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning tripwire errors into a one-line message and exit code 1."""
    from triggers.errors import TripwireError

    try:
        return asyncio.run(coro)
    except TripwireError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiokafka", "kafka", "alembic", "aio_pika", "aiormq", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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


async def with_store(action: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    from sensors.runs.store import RunStore

    settings = cli_settings()
    async with await RunStore.open(settings.store_url) as store:
        return await action(store)


def scope(project: str | None, domain: str | None) -> dict[str, str]:
    """The project and domain a command acts in: as given, else from the settings."""
    settings = cli_settings()
    return {"project": project or settings.project, "domain": domain or settings.domain}

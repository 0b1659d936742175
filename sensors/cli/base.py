"""What every command of the ``tripwire`` command line shares: the consoles, the shared
options, errors as one line, and shell completion of what the run store holds.

Each command group is a module of its own that imports this one; :mod:`sensors.cli`
puts them together. Commands only translate: the work is elsewhere.

Every error is one line on standard error, ``error: <what happened>; <what to do>``,
with exit code 2 for a usage error and 1 for a failure: :func:`fail` prints it, and
:class:`OneLineErrors`, the root command, prints click's usage errors, the tripwire
errors a command raises and an unexpected crash the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

if TYPE_CHECKING:
    # typer's copy of click, whose Context typer.Context derives from, for overriding.
    from typer._click import Context as ClickContext

    from triggers.settings import Settings
    from triggers.spec import FlowSpec

__all__ = [
    "DomainOption",
    "FlowPaths",
    "JsonOption",
    "OneLineErrors",
    "ProjectOption",
    "RunName",
    "T",
    "VerboseOption",
    "cli_settings",
    "complete_event",
    "complete_flow",
    "complete_run",
    "complete_sensor",
    "configure_logging",
    "described",
    "err",
    "fail",
    "out",
    "parse_pairs",
    "publishable",
    "run_sync",
    "scope",
    "with_store",
]

T = TypeVar("T")

# Piped output is read by scripts and greps: no wrapping or truncation at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_VERBOSE = "tripwire.verbose"
"""The key in the click context's ``meta`` (shared by a command and the root) under which
``--verbose`` notes its value, for the root command to read when the command crashes."""


def fail(what: str, fix: str | None = None, *, code: int = 1) -> NoReturn:
    """Print ``error: WHAT; FIX`` on standard error, and exit with ``code``: 2 for a usage
    error, 1 for a failure. ``fix`` may be left out when ``what`` already says what to do,
    as a tripwire error's message does."""
    err.print(Text.assemble(("error:", "red"), f" {what}" + (f"; {fix}" if fix else "")))
    raise typer.Exit(code)


def described(exc: BaseException) -> str:
    """``Type: message`` on one line, the type named once even when the message names it."""
    # Here, not at the top: any module of triggers loads the whole SDK (see cli_settings).
    from triggers.error_text import exception_text

    return " ".join(exception_text(exc).split())


class OneLineErrors(TyperGroup):
    """The root command: it reports every error as one line (see the module docs).

    click's own usage errors (a missing argument, a bad option value, an unknown
    command) and the tripwire errors a command raises come out through :func:`fail`,
    and so does a crash, a bug: with its traceback under ``--verbose``, or always when
    the command has no ``--verbose`` to ask for it.
    """

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        with _one_line_errors(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: ClickContext) -> Any:
        with _one_line_errors(ctx):
            return super().invoke(ctx)


@contextlib.contextmanager
def _one_line_errors(ctx: ClickContext) -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:  # click's errors, usage errors among them
        # Named, not imported, as typer does: its copy of click does not export the class.
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already
            raise
        fail(*_usage_error(exc, getattr(exc, "ctx", None)), code=exc.exit_code)
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        from triggers.errors import TripwireError

        if isinstance(exc, TripwireError):
            fail(str(exc))
        what = f"internal error: {described(exc)}"
        if ctx.meta.get(_VERBOSE) is False:
            fail(what, "please report it (--verbose shows the traceback)")
        err.print("".join(traceback.format_exception(exc)), markup=False, end="")
        fail(what, "please report it with the traceback above")


def _usage_error(exc: typer.TyperException, ctx: ClickContext | None) -> tuple[str, str]:
    """A click error as (what happened, what to do).

    Messages written for tripwire say what to do after ``; ``. click's own give a hint,
    if any, in a second sentence or in brackets ("No such command 'lst'. Did you mean
    'list'?", "No such option: --prject (Possible options: --project)"); without one,
    what to do is the command's usage.
    """
    text = " ".join(exc.format_message().split())
    what, _, fix = text.partition("; ")
    if fix:
        return _lower(what), fix
    what, _, hint = text.partition(". ")
    what, _, options = what.partition(" (Possible options: ")
    hint = _lower(hint) or (f"did you mean {options.removesuffix(')')}?" if options else "")
    if ctx is None:
        return _lower(what.rstrip(".")), hint or "see tripwire --help"
    usage = " ".join(ctx.get_usage().split()).removeprefix("Usage: ")
    see = f"(see {ctx.command_path} --help)" if hint else f"usage: {usage} (see --help)"
    return _lower(what.rstrip(".")), f"{hint} {see}".lstrip()


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _note_verbose(ctx: typer.Context, verbose: bool) -> bool:
    ctx.meta[_VERBOSE] = verbose
    return verbose


JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
FlowPaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Flow files or folders to load (folders are searched recursively)."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", callback=_note_verbose)]
ProjectOption = Annotated[
    str | None, typer.Option(help="Project (default: TRIPWIRE_PROJECT, else 'default').")
]
DomainOption = Annotated[
    str | None, typer.Option(help="Domain (default: TRIPWIRE_DOMAIN, else 'development').")
]


def cli_settings() -> Settings:
    """The settings, from the ``TRIPWIRE_*`` variables and ``dev.json``.

    Raises:
        ConfigurationError: a variable is invalid; the message names each.
    """
    # Here, not at the top: any module of triggers loads the whole SDK (0.2 s on 2 cores),
    # which `tripwire --help` does not need (bench/startup.py).
    from pydantic import ValidationError

    from triggers.errors import ConfigurationError
    from triggers.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        bad = ", ".join(
            f"TRIPWIRE_{'_'.join(map(str, e['loc'])).upper()} ({e['msg']})"
            if e["loc"]
            else e["msg"]
            for e in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {bad}; fix or unset them") from None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a tripwire error it raises becomes one line, and exit
    code 1, through :class:`OneLineErrors`."""
    return asyncio.run(coro)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiokafka", "kafka", "alembic", "aio_pika", "aiormq", "nats", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs into a payload; values are JSON when they parse, else strings.

    Spaces around the ``=`` are dropped: ``-p 'rows = 42'`` is ``rows=42``.
    """
    payload: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.lstrip()
        if not sep or not key:
            raise typer.BadParameter(
                f"{pair!r} is not key=value; write it as e.g. -p rows=42", param_hint="-p"
            )
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


# Shell completion (`tripwire --install-completion`): what the run store holds.

_COMPLETION_SECONDS = 2.0
"""The longest a completion waits for the run store: a TAB must never hang the shell."""
_RUNS_OFFERED = 200
"""Run names offered: the newest this many."""

Names = Callable[[Any, str, str], Coroutine[Any, Any, list[str]]]
"""Reads names from an open run store, for a project and a domain."""


def _completion(names: Names) -> Callable[[typer.Context, str], list[str]]:
    """A completion callback offering the names ``names`` reads from the run store.

    It reads the store the settings name (``tripwire dev`` advertises its own in
    ``dev.json``), in the ``--project`` and ``--domain`` typed so far, and starts nothing.
    Whatever goes wrong, it offers nothing and prints nothing: the shell shows its
    output.
    """

    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        try:
            with (
                contextlib.redirect_stderr(io.StringIO()),
                warnings.catch_warnings(action="ignore"),
            ):
                found = _stored(names, ctx.params)
        except Exception:
            return []
        return sorted({name for name in found if name.startswith(incomplete)})

    return complete


def _stored(names: Names, params: dict[str, Any]) -> list[str]:
    from sqlalchemy.engine import make_url

    # Imported before the clock starts: on a busy machine they take seconds, the query not.
    import sensors.runs.deploy  # noqa: F401  (what the names read with)
    from sensors.runs.store import RunStore

    settings = cli_settings()
    url = make_url(settings.store_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or ":memory:").is_file():
        return []  # nothing deployed, and a TAB must not create the store
    project = params.get("project") or settings.project
    domain = params.get("domain") or settings.domain

    async def read() -> list[str]:
        async with await RunStore.open(settings.store_url, migrate=False) as store:
            return await names(store, project, domain)

    return asyncio.run(asyncio.wait_for(read(), _COMPLETION_SECONDS))


async def _flows(store: Any, project: str, domain: str) -> list[FlowSpec]:
    from sensors.runs.deploy import current_flows

    return [spec for spec, _ in await current_flows(store, project=project, domain=domain)]


async def _flow_names(store: Any, project: str, domain: str) -> list[str]:
    return [spec.name for spec in await _flows(store, project, domain)]


async def _sensors(store: Any, project: str, domain: str) -> list[str]:
    flows = await _flows(store, project, domain)
    return [spec.name for spec in flows] + [f"{s.name}.{t.name}" for s in flows for t in s.triggers]


def publishable(event: str) -> bool:
    """Whether a user would publish ``event``: not a wildcard, nor a run's end (which
    tripwire publishes itself, for ``@trigger_on_finish``)."""
    from triggers.spec import RUN_EVENT_TYPE  # here: the SDK costs `tripwire --help` 0.2 s

    return not any(c in event for c in "*?[") and not event.startswith(RUN_EVENT_TYPE)


async def _event_names(store: Any, project: str, domain: str) -> list[str]:
    flows = await _flows(store, project, domain)
    names = {d.name for spec in flows for t in spec.triggers for d in t.dependencies}
    return sorted(name for name in names if publishable(name))


async def _run_names(store: Any, project: str, domain: str) -> list[str]:
    runs = await store.list_runs(project=project, domain=domain, limit=_RUNS_OFFERED)
    return [run.name for run in runs]


complete_flow = _completion(_flow_names)
"""Completes a deployed flow's name."""
complete_sensor = _completion(_sensors)
"""Completes a deployed sensor's id (``flow.trigger``), or a flow's name (all its sensors)."""
complete_event = _completion(_event_names)
"""Completes an event name the deployed flows' triggers wait for."""
complete_run = _completion(_run_names)
"""Completes a run's name, among the newest runs."""

RunName = Annotated[
    str,
    typer.Argument(help="Run name, as `tripwire runs list` shows it.", autocompletion=complete_run),
]

"""What ``tripwire dev`` prints when it is ready, and when it reloads flows."""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from sensors.cli.base import publishable

if TYPE_CHECKING:
    from sensors.dev import DevInfo
    from triggers.spec import EventDependency, FlowSpec

__all__ = ["print_dev_banner", "publish_hint", "say"]

_console = Console(stderr=True, highlight=False, soft_wrap=True)
_EXAMPLES = {"int": 42, "float": 1.5, "bool": True, "str": "example"}
_DOTTED = re.compile(r"^\$\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


_SAID = {"reloaded": "bold", "import error": "red", "reload failed": "red", "not deployed": "red"}


def say(what: str, text: str) -> None:
    """One line of dev's console: what a reload did (``reloaded``, ``import error`` ...)."""
    style = _SAID.get(what, "bold")
    _console.print(f"[{style}]{what}[/{style}] {escape(text)}")


def print_dev_banner(info: DevInfo, *, verbose: bool = False) -> None:
    console = _console
    console.print(
        f"[bold green]tripwire dev ready[/bold green] in {info.startup_seconds:.1f}s\n"
        f"  broker  {info.bootstrap}\n  store   {info.store_url}\n  home    {info.home}\n"
        f"  api     {info.api_url}  (web page: {info.api_url}/)\n"
        f"  token   {info.api_token}  (local admin token for the API and the page)"
    )
    if info.busy_port is not None:
        console.print(
            f"  [yellow]port {info.busy_port} is busy[/yellow] (another tripwire dev?), so the "
            f"API serves on {info.api_url.rsplit(':', 1)[-1]}; dev.json in the home has the URL"
        )
    for flow in info.flows:
        for trig in flow.triggers:
            names = ", ".join(d.name for d in trig.dependencies)
            if trig.schedule is not None:
                names = trig.schedule.describe()
            console.print(f"  flow [bold]{flow.name}[/bold] <- {escape(names)}")
    for problem in info.problems:
        console.print(f"  [red]left out[/red] {escape(problem.short())}")
        if verbose:
            console.print(problem.traceback, markup=False)
    if info.problems and not verbose:
        console.print("  (--verbose shows their tracebacks; saving a fix loads it)")
    if not info.flows and not info.problems:
        console.print("  [yellow]no flows found[/yellow]: pass the files or folders of your flows")
    hint = publish_hint(info.flows)
    if hint:
        console.print(f"Publish from another terminal: {escape(hint)}")
    console.print("Edits of the flow files are followed; Ctrl-C stops.")


def publish_hint(flows: tuple[FlowSpec, ...] | list[FlowSpec]) -> str | None:
    """A ``tripwire publish`` command that starts a run of one of ``flows``: an event it
    waits for alone, with no filter, and a payload that fills its required parameters;
    None when no flow waits for such an event."""

    # A local run first: it needs nothing else running (a web hook or a cluster does); and
    # a flow whose parameters all have defaults: its example needs no made-up values
    def first(flow: FlowSpec) -> tuple[bool, bool, str]:
        required = any(p.required for p in flow.parameters)
        return flow.target != "local://", required, flow.name

    for flow in sorted(flows, key=first):
        for trig in flow.triggers:
            if (trig.target or flow.target) != "local://":
                continue
            alone = len(trig.dependencies) == 1 and not (trig.conditions or trig.threshold)
            if not alone or trig.schedule is not None or trig.absence is not None:
                continue  # it needs more than one event, or a time
            [dep] = trig.dependencies
            if dep.filters or not publishable(dep.name):
                continue
            payload = _example_payload(flow, dep)
            if payload is None:
                continue
            command = f"tripwire publish {shlex.quote(dep.name)}"
            if any(isinstance(v, dict) for v in payload.values()):
                return f"{command} --payload {shlex.quote(json.dumps(payload))}"
            pairs = (shlex.quote(f"{k}={_pair_value(v)}") for k, v in payload.items())
            return " ".join([command, *(f"-p {pair}" for pair in pairs)])
    return None


def _example_payload(flow: FlowSpec, dep: EventDependency) -> dict[str, Any] | None:
    """Fields for the parameters ``dep`` fills, with their defaults or an example of their
    type; None when a required one cannot be filled."""
    params = {p.name: p for p in flow.parameters}
    sources = dep.parameters if dep.parameters is not None else {n: n for n in params}
    payload: dict[str, Any] = {}
    for param in params.values():
        source = sources.get(param.name)
        value = param.default if param.default is not None else _example(param.type["t"])
        placed = source is not None and value is not None and _place(payload, source, value)
        if not placed and param.required:
            return None
    return payload


def _example(kind: str) -> Any:
    examples = {**_EXAMPLES, "date": date.today().isoformat(), "datetime": _now()}
    return examples.get(kind)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _place(payload: dict[str, Any], source: str, value: Any) -> bool:
    """Put ``value`` where ``source`` reads it: a field, or a dotted JSONPath
    (``$.cfg.days``); False for any other source."""
    if not source.startswith("$"):
        payload[source] = value
        return True
    if not _DOTTED.match(source):
        return False
    *outer, last = source[2:].split(".")
    here = payload
    for key in outer:
        here = here.setdefault(key, {})
    here[last] = value
    return True


def _pair_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

"""What ``tripwire dev`` prints when it is ready, and when it reloads flows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from sensors.dev import DevInfo

__all__ = ["print_dev_banner"]


def print_dev_banner(info: DevInfo) -> None:
    console = Console(stderr=True, highlight=False)
    console.print(
        f"[bold green]tripwire dev ready[/bold green] in {info.startup_seconds:.1f}s\n"
        f"  broker  {info.bootstrap}\n  store   {info.store_url}\n  home    {info.home}\n"
        f"  api     {info.api_url}  (web page: {info.api_url}/)\n"
        f"  token   {info.api_token}  (local admin token for the API and the page)"
    )
    for flow in info.flows:
        for trig in flow.triggers:
            names = ", ".join(d.name for d in trig.dependencies)
            if trig.schedule is not None:
                names = trig.schedule.describe()
            console.print(f"  flow [bold]{flow.name}[/bold] <- {names}")
    if not info.flows:
        console.print("  [yellow]no flows found[/yellow]: pass the files or folders of your flows")
    console.print("Publish from another terminal: tripwire publish data_updated -p rows=42")

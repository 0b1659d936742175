"""``tripwire import argo-sensor``: a flow file from another system's declarations.

Exit codes: 0 written; 1 the manifest cannot be read or is not a Sensor Argo would accept
(or the output exists or cannot be written, or the importer failed: a bug, reported in one
line, with the traceback under ``--verbose``); 3 a trigger cannot be translated exactly,
so nothing was written (``--partial`` writes the others); 2 a usage error.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from sensors.cli.base import VerboseOption, described, err, fail

__all__ = ["REFUSED", "import_app"]

REFUSED = 3
"""The exit code when a trigger cannot be translated exactly and ``--partial`` is not given."""

import_app = typer.Typer(
    help="Write tripwire flow files from other systems' declarations (Argo Events Sensors).",
    no_args_is_help=True,
)


@import_app.command("argo-sensor")
def argo_sensor(
    manifest: Annotated[
        Path, typer.Argument(help="The Sensor manifest (YAML); - reads standard input.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the flow file here (default: standard output)."),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="Write the triggers that translate even when others do not (listed on top "
            "of the file), and exit 0.",
        ),
    ] = False,
    prefix_source: Annotated[
        bool,
        typer.Option(
            "--prefix-source",
            help="Name each event EVENTSOURCE.EVENTNAME instead of EVENTNAME.",
        ),
    ] = False,
    payload_root: Annotated[
        str,
        typer.Option(
            help="The part of Argo's event data that is a tripwire event's payload; paths "
            "under it read from $ ('' keeps Argo's whole event data).",
        ),
    ] = "body",
    within: Annotated[
        str,
        typer.Option(help="How long a trigger of several dependencies holds their events."),
    ] = "1h",
    namespace: Annotated[
        str | None,
        typer.Option(help="The namespace of resources that name none (default: the Sensor's)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Write a flow file from an Argo Events Sensor: one flow per trigger.

    What cannot be translated exactly is listed with the reason, on standard error and on
    top of the file; such a trigger is never written as something else.
    """
    # Here, not at the top: the translator loads the SDK, which `tripwire --help` need not.
    from sensors.interop.argo_sensor import Options, read_manifest, translate
    from triggers.errors import DeclarationError

    origin = "standard input" if str(manifest) == "-" else str(manifest)
    if output is not None and output.exists() and not force:
        fail(f"{output} exists; pass --force to overwrite it, or choose another --output.")
    try:
        text = sys.stdin.read() if str(manifest) == "-" else manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {origin}: {exc}.")
    options = Options(
        prefix_source=prefix_source, payload_root=payload_root, within=within, namespace=namespace
    )
    try:
        done = translate(read_manifest(text, origin), origin=origin, options=options)
    except DeclarationError as exc:
        fail(str(exc))
    except Exception as exc:  # whatever the manifest holds, a crash is the importer's
        if verbose:
            err.print(traceback.format_exc(), markup=False, highlight=False)
        fail(
            f"an importer bug: {described(exc)}",
            "please report it with the manifest"
            + ("." if verbose else " (--verbose shows where)."),
        )
    for finding in done.ordered():
        err.print(f"{finding.kind}: {finding.line()}", markup=False, highlight=False)
    if done.refused and not partial:
        fail(
            f"{len(done.refused)} trigger(s) cannot be translated exactly, so nothing was "
            "written; change them, or pass --partial to write the others.",
            code=REFUSED,
        )
    if done.source is None:
        fail("no trigger could be translated, so nothing was written.", code=REFUSED)
    if output is None:
        sys.stdout.write(done.source)
    else:
        try:
            output.write_text(done.source, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {output}: {exc}.")
        names = ", ".join(f.name for f in done.flows)
        err.print(f"wrote {len(done.flows)} flow(s) to {output}: {names}", markup=False)

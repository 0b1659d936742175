"""A run of a Metaflow flow: ``python flow.py [--branch B] [--production] run --PARAM VALUE``.

Metaflow parses its own parameters; the phase comes from the process's exit code, and the
Metaflow run it made (its pathspec, ``Flow/run_id``) is reported in the result, so the
engine keeps it on the run and names it in the flow's end event. The flow file's folder is
the working directory, as when its author runs it, so Metaflow's local metadata
(``.metaflow``) is the one they know. ``triggers.current`` works in every step: the run
context file is in the environment.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from triggers.current import RunContext
from triggers.outcome import process_outcome, run_process
from triggers.spec import Entrypoint, MetaflowRun
from triggers.targets import as_text

__all__ = ["metaflow_argv", "run_metaflow"]

_USER_VARIABLES = ("METAFLOW_USER", "SUDO_USER", "USERNAME", "USER")
"""Where Metaflow looks for the user a run is for (it does not count root)."""


def run_metaflow(
    entrypoint: Entrypoint, context: RunContext, context_file: Path, result_file: Path
) -> int:
    """Run the Metaflow flow ``entrypoint`` names with the run's parameters; return the
    run process's exit code, having written the outcome to ``result_file``."""
    assert entrypoint.metaflow is not None and entrypoint.path is not None
    flow = entrypoint.metaflow
    folder = Path(entrypoint.path).parent
    os.chdir(folder)  # this process is the run's alone; Metaflow's client looks here too
    with tempfile.TemporaryDirectory(prefix="tripwire-metaflow-") as scratch:
        run_id_file = Path(scratch) / "run-id"
        argv = metaflow_argv(entrypoint.path, flow, context, run_id_file, folder)
        env = {"TRIPWIRE_RUN_CONTEXT": str(context_file.resolve())}
        if flow.owner:
            env["METAFLOW_OWNER"] = flow.owner  # the user branch it was deployed on
        if not any(os.environ.get(name) not in (None, "", "root") for name in _USER_VARIABLES):
            # Metaflow refuses to run for nobody, and root is nobody to it; a pod often has no
            # user, and Argo sets one too.
            env["METAFLOW_USER"] = flow.owner or "tripwire"
        done = run_process(argv, env, str(folder), result_file)
        if isinstance(done, int):
            return done
        run_id = run_id_file.read_text().strip() if run_id_file.exists() else ""
    if done.returncode == 0 and not run_id:
        message = (
            f"`python {Path(entrypoint.path).name} run` started no Metaflow run; end the file "
            f"with `if __name__ == '__main__': {flow.flow}()`, as Metaflow flows do."
        )
        print(message, file=sys.stderr)
        return process_outcome(argv, 1, result_file, message=message, error="NoMetaflowRun")
    outputs = _outputs(flow, run_id) if run_id else None
    made = f"Metaflow run {flow.flow}/{run_id}" if run_id else "no Metaflow run"
    message = (
        f"`python {Path(entrypoint.path).name} run` exited with code {done.returncode} "
        f"({made}); its output is in the run's log"
    )
    return process_outcome(argv, done.returncode, result_file, outputs, message=message)


def metaflow_argv(
    path: str, flow: MetaflowRun, context: RunContext, run_id_file: Path, folder: Path
) -> list[str]:
    """The command line of a run: Metaflow's top-level options, ``run``, its parameters."""
    top: list[str] = ["--no-pylint"]
    if flow.given_branch:
        top += ["--branch", flow.given_branch]
    if flow.production:
        top.append("--production")
    for upstream in _upstream_runs(flow, context, folder):
        top += ["--trigger", upstream]
    parameters: list[str] = []
    for name, value in context.parameters.items():
        if value is not None:
            parameters += [f"--{name}", as_text(value)]  # JSONType: as JSON
    return [sys.executable, path, *top, "run", "--run-id-file", str(run_id_file), *parameters]


def _upstream_runs(flow: MetaflowRun, context: RunContext, folder: Path) -> list[str]:
    """The Metaflow runs whose end events triggered this one through its
    ``@trigger_on_finish`` (``Flow/run_id``), for Metaflow's ``--trigger``, which gives the
    steps ``current.trigger``. Metaflow allows it only for runs its metadata knows, so only
    runs in the local metadata here are named."""
    if os.environ.get("METAFLOW_DEFAULT_METADATA", "local") != "local":
        return []
    root = Path(os.environ.get("METAFLOW_DATASTORE_SYSROOT_LOCAL") or folder) / ".metaflow"
    runs = []
    for event in context.events:
        if event.name not in flow.upstream_events:
            continue
        upstream, run_id = event.payload.get("flow_name"), event.payload.get("run_id")
        if upstream and run_id and (root / str(upstream) / str(run_id)).is_dir():
            runs.append(f"{upstream}/{run_id}")
    return runs


def _outputs(flow: MetaflowRun, run_id: str) -> dict[str, Any]:
    """What the engine keeps of a Metaflow run: its pathspec, and its end task's."""
    pathspec = f"{flow.flow}/{run_id}"
    return {"metaflow": {"pathspec": pathspec, "run_id": run_id, "end_task": _end_task(pathspec)}}


def _end_task(pathspec: str) -> str | None:
    """The pathspec of the run's end task, from Metaflow's client (None if it has none)."""
    try:
        import metaflow

        metaflow.namespace(None)
        run = metaflow.Run(pathspec, _namespace_check=False)
        return str(run.end_task.pathspec) if run.end_task is not None else None
    except Exception:  # a failed run has no end task; its pathspec is reported anyway
        return None

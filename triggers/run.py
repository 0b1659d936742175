"""The process a run executes in: ``python -m triggers.run --context FILE --result FILE``.

It loads the flow function, binds ``triggers.current``, validates the run's
parameters against the function's annotations, and calls it; or, for a
``command://`` target, runs the command the context names (no shell); or, for a
Metaflow flow, runs ``python flow.py run --PARAM VALUE ...``. The outcome is
written to the result file as JSON, so the launcher can tell a flow's own
exception (kind USER, with message and traceback) from a broken run
environment (kind SYSTEM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import inspect
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from triggers import tracing
from triggers.current import RunContext, current, trace_carrier
from triggers.error_text import exception_text
from triggers.loader import load_entrypoint
from triggers.outcome import (
    EXIT_OK,
    EXIT_SYSTEM,
    EXIT_USER,
    passed_gate,
    process_outcome,
    run_process,
    write,
)
from triggers.params import ParamSpec
from triggers.spec import Entrypoint


def _call_arguments(func: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    """Turn the run's JSON parameters into Python values for ``func``.

    A parameter still equal to its (JSON) default is left out, so the function
    gets its own Python default object rather than a JSON copy of it.
    """
    arguments: dict[str, Any] = {}
    adapters = prepare(func)
    for name, value in parameters.items():
        if name not in adapters:
            continue
        spec, adapter = adapters[name]
        if not spec.required and value == spec.default:
            continue
        arguments[name] = adapter.validate_python(value)
    return arguments


@functools.cache
def prepare(func: Any) -> dict[str, tuple[ParamSpec, TypeAdapter[Any]]]:
    """``func``'s parameters and the validator of each, built once per function: a zygote
    builds them before it forks, so that its runs do not (see :mod:`triggers.zygote`)."""
    hints = inspect.get_annotations(func, eval_str=True)
    return {
        spec.name: (spec, TypeAdapter(hints.get(spec.name, Any))) for spec in ParamSpec.of(func)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triggers.run")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--context", type=Path, help="the run context file")
    source.add_argument(
        "--context-from-env", metavar="NAME", help="an environment variable holding it (a pod)"
    )
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.context is None:
        # In a pod the context comes in the environment; a file, so current can find it.
        args.context = Path(tempfile.mkdtemp(prefix="tripwire-")) / "context.json"
        args.context.write_text(os.environ.get(args.context_from_env, ""))
        os.environ["TRIPWIRE_RUN_CONTEXT"] = str(args.context)
    return run(args.context, args.result)


def run(context_file: Path, result_file: Path) -> int:
    """Run the flow that ``context_file`` names, write its outcome to ``result_file``, and
    return the process's exit code (what ``main`` does once it read its arguments)."""
    try:
        return _run(context_file, result_file)
    finally:
        _flush_spans()  # a zygote's child ends with os._exit, which skips the SDK's atexit


def _run(context_file: Path, result_file: Path) -> int:
    if not passed_gate():
        print(
            "tripwire: not started: the store refused this worker the run's attempt (another "
            "worker took the run over), or the worker stopped before it let it start; nothing "
            "of the flow ran",
            file=sys.stderr,
        )
        return EXIT_SYSTEM
    try:
        raw = json.loads(context_file.read_text())
        context = RunContext.load(context_file)
        entrypoint = Entrypoint.model_validate(raw["entrypoint"])
    except Exception as exc:
        write(
            result_file,
            {"ok": False, "kind": "SYSTEM", "code": "BadContext", "message": f"bad context: {exc}"},
        )
        return EXIT_SYSTEM

    if raw.get("command"):
        return _run_command(raw["command"], result_file)
    if entrypoint.metaflow is not None:
        from triggers.metaflow_run import run_metaflow  # only a Metaflow flow's runs need it

        return run_metaflow(entrypoint, context, context_file, result_file)
    current._bind(context)
    try:
        func = load_entrypoint(entrypoint)
        arguments = _call_arguments(func, context.parameters)
    except Exception as exc:
        # The flow never started: its code moved or changed since it was deployed.
        message = f"cannot start flow {context.flow!r}: {exception_text(exc)}"
        if isinstance(exc, ValidationError):
            message = f"the run's parameters no longer fit flow {context.flow!r}: {exc}"
        write(
            result_file,
            {
                "ok": False,
                "kind": "SYSTEM",
                "code": "FlowNotLoadable",
                "message": message,
                "traceback": traceback.format_exc(),
            },
        )
        traceback.print_exc()
        return EXIT_SYSTEM
    try:
        with _in_trace():
            result = func(**arguments)
            if inspect.isawaitable(result):
                asyncio.run(_await(result))
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            write(result_file, {"ok": True})
            return EXIT_OK
        write(
            result_file,
            {
                "ok": False,
                "kind": "USER",
                "code": type(exc).__name__,
                "message": exception_text(exc),
                "traceback": traceback.format_exc(),
            },
        )
        traceback.print_exc()
        return EXIT_USER
    write(result_file, {"ok": True})
    return EXIT_OK


def _run_command(command: dict[str, Any], result: Path) -> int:
    """Run a ``command://`` target's argv, no shell, its output going to the run log."""
    argv = [str(item) for item in command["argv"]]
    done = run_process(argv, command.get("env", {}), command.get("cwd"), result)
    return done if isinstance(done, int) else process_outcome(argv, done.returncode, result)


async def _await(awaitable: Any) -> Any:
    return await awaitable


@contextlib.contextmanager
def _in_trace() -> Iterator[None]:
    """Run the flow with the trace context the engine gave the process (``TRACEPARENT``)
    as OpenTelemetry's current context, so that the flow's own spans are children of its
    attempt; with OpenTelemetry's SDK set up first when ``OTEL_*`` configure it here.
    Without that variable, or without OpenTelemetry, nothing is imported or attached."""
    carrier = trace_carrier()
    if not carrier:
        yield
        return
    try:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        yield
        return
    tracing.enabled()
    token = context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


def _flush_spans() -> None:
    """Export the spans the run made (its flow's, its events') before the process ends."""
    if "opentelemetry.trace" not in sys.modules:
        return
    from opentelemetry import trace

    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush()


if __name__ == "__main__":
    sys.exit(main())

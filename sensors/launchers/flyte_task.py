"""Runs one Flyte 2 task in Flyte's local mode and writes how it ended: the process of a
``flyte://`` attempt with ``mode="local"``.

The launcher runs this file's source with ``python -c`` in the target's interpreter, which
needs the ``flyte`` SDK and the task's code, not tripwire: it imports nothing of tripwire.
Arguments: the task (``ENV.TASK``), the module or ``.py`` file that defines it, the
attempt's name (the Flyte run's name), its inputs as JSON, and the result file to write,
renamed into place: ``{"phase": "SUCCEEDED", "outputs": {"flyte": {"run", "task",
"outputs"}}}`` or ``{"phase": "FAILED", "kind": "USER" or "SYSTEM", "code": ...,
"message": ..., "traceback": ...}``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any


def main(argv: list[str]) -> int:
    task_name, module, name, inputs, result = argv
    try:
        import flyte
    except ImportError:
        return _write(
            result,
            _failed(
                "SYSTEM",
                "FlyteMissing",
                f"{sys.executable} has no flyte SDK: pip install 'flyte>=2,<3' in it, or give "
                "the target python= an interpreter that has it",
            ),
        )
    try:
        task = _task(_module(module), task_name)
    except Exception as exc:  # the code cannot be loaded: a retry would fail alike
        return _write(result, _failed("SYSTEM", "TaskNotFound", str(exc), traceback.format_exc()))
    try:
        values = _inputs(task, json.loads(inputs))
    except (TypeError, ValueError) as exc:  # the run's values do not fit the task: for good
        return _write(result, _failed("SYSTEM", "FlyteInputs", str(exc)))
    flyte.init()  # no endpoint: Flyte's local mode
    try:
        run = flyte.with_runcontext(mode="local", name=name).run(task, **values)
        outputs = run.outputs()
    except Exception as exc:
        code = getattr(exc, "code", None) or type(exc).__name__
        kind = "USER" if isinstance(exc, flyte.errors.RuntimeUserError) else "SYSTEM"
        return _write(result, _failed(kind, str(code), str(exc), traceback.format_exc()))
    report = {"run": name, "task": task_name, "outputs": _plain(outputs)}
    return _write(result, {"phase": "SUCCEEDED", "outputs": {"flyte": report}})


def _module(where: str) -> ModuleType:
    """The module named ``where``, or the ``.py`` file at that path."""
    if not where.endswith(".py"):
        return importlib.import_module(where)
    path = Path(where).resolve()
    sys.path.insert(0, str(path.parent))  # the file's neighbours import as in `flyte run`
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _task(module: ModuleType, task_name: str) -> Any:
    """The task called ``ENV.TASK`` among the TaskEnvironments ``module`` defines."""
    import flyte

    environments = [v for v in vars(module).values() if isinstance(v, flyte.TaskEnvironment)]
    for environment in environments:
        if task_name in environment.tasks:
            return environment.tasks[task_name]
    known = sorted(t for environment in environments for t in environment.tasks)
    raise LookupError(f"{module.__name__} defines no task {task_name!r}; it defines {known}")


def _inputs(task: Any, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` as the task's inputs: each converted to the type its signature says (JSON
    has no float that is a whole number), and none it does not take (Flyte would drop it
    without a word)."""
    declared = task.native_interface.inputs  # name -> (type, default)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TypeError(
            f"task {task.name} takes {sorted(declared)}, not {unknown}: map the run's "
            "parameters onto its inputs with the target's inputs= template"
        )
    try:
        from pydantic import TypeAdapter
    except ImportError:  # the SDK brings pydantic; without it, the values go as they are
        return given
    return {key: TypeAdapter(declared[key][0]).validate_python(v) for key, v in given.items()}


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it; its repr where it cannot."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _failed(kind: str, code: str, message: str, trace: str | None = None) -> dict[str, Any]:
    return {"phase": "FAILED", "kind": kind, "code": code, "message": message, "traceback": trace}


def _write(path: str, outcome: dict[str, Any]) -> int:
    partial = f"{path}.partial"
    Path(partial).write_text(json.dumps(outcome))
    os.replace(partial, path)
    return 0 if outcome["phase"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

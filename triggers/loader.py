"""Loading user code: a flow file by path, or a flow function by entrypoint."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from triggers.errors import DeclarationError
from triggers.spec import Entrypoint

__all__ = ["load_entrypoint", "load_file"]


def load_file(path: str | Path) -> ModuleType:
    """Import a Python file under a name derived from its path (stable, collision-free).

    The file's folder goes on ``sys.path`` so that it can import its neighbours.

    Raises:
        DeclarationError: the file does not exist or raised while importing; user code
            errors propagate with their own type so that tracebacks stay intact.
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise DeclarationError(f"flow file {file} does not exist.")
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    module_name = f"tripwire_flows.{file.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise DeclarationError(f"{file} is not an importable Python file.")
    module = importlib.util.module_from_spec(spec)
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def load_entrypoint(entrypoint: Entrypoint) -> Callable[..., Any]:
    """Return the flow function an entrypoint names."""
    if entrypoint.path:
        module = load_file(entrypoint.path)
    elif entrypoint.module:
        module = importlib.import_module(entrypoint.module)
    else:
        raise DeclarationError(f"entrypoint {entrypoint!r} names neither a path nor a module.")
    func = getattr(module, entrypoint.function, None)
    if not callable(func):
        where = entrypoint.path or entrypoint.module
        raise DeclarationError(f"{where} has no function {entrypoint.function!r}.")
    return func

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

    The file's folder goes on ``sys.path`` so that it can import its neighbours. A file in
    a package (its folder has an ``__init__.py``) is imported under its dotted name, with the
    folder above the top package on ``sys.path`` too, so that its relative imports work.

    Raises:
        DeclarationError: the file does not exist or raised while importing; user code
            errors propagate with their own type so that tracebacks stay intact.
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise DeclarationError(f"flow file {file} does not exist.")
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    packaged = _as_package_module(file)
    if packaged is not None:
        return packaged
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    module_name = f"tripwire_flows.{file.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise DeclarationError(f"{file} is not an importable Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _as_package_module(file: Path) -> ModuleType | None:
    """``file`` imported as the module of its package it is, or None when it is in no
    package (or that name is another module's, already imported)."""
    folder, parts = file.parent, [file.stem]
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    if len(parts) == 1 or not all(part.isidentifier() for part in parts):
        return None
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    name = ".".join(parts)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None  # the name is taken by an installed package: load it by path
        raise
    same = getattr(module, "__file__", None) and Path(module.__file__ or "").resolve() == file
    return module if same else None


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

"""Finding flows: load the decorated functions declared in files and folders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from triggers.decorators import flow_spec, is_flow
from triggers.errors import DeclarationError
from triggers.loader import load_file
from triggers.spec import FlowSpec

__all__ = ["discover_flows", "flow_files"]


def flow_files(paths: Iterable[str | Path]) -> list[Path]:
    """The Python files that ``paths`` name: files as given, folders searched recursively.

    Files and folders whose name starts with ``_`` or ``.`` are skipped inside folders
    (``__init__.py``, ``__pycache__``, ``.venv``), as are ``test_*.py`` files.

    Raises:
        DeclarationError: a path does not exist or is not a Python file.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*.py")):
                parts = file.relative_to(path).parts
                if any(p.startswith(("_", ".")) for p in parts) or file.name.startswith("test_"):
                    continue
                files.append(file)
        elif path.is_file() and path.suffix == ".py":
            files.append(path)
        elif path.exists():
            raise DeclarationError(f"{path} is not a Python file; give .py files or folders.")
        else:
            raise DeclarationError(
                f"{path} does not exist; give the files or folders of your flows."
            )
    return files


def discover_flows(paths: Iterable[str | Path]) -> list[FlowSpec]:
    """Import every flow file under ``paths`` and return the specs of the flows they declare.

    A flow is a function decorated with ``@trigger`` (or another tripwire decorator)
    defined at the top level of a file. Importing the same function under two names
    declares it once.

    Raises:
        DeclarationError: two different flows share a name (flow names identify runs
            and sensors), or a path is missing.
    """
    specs: dict[str, FlowSpec] = {}
    for file in flow_files(paths):
        module = load_file(file)
        for value in vars(module).values():
            if not is_flow(value) or value.__module__ != module.__name__:
                continue
            spec = flow_spec(value, path=file)
            other = specs.get(spec.name)
            if other is not None and other.entrypoint != spec.entrypoint:
                raise DeclarationError(
                    f"two flows are named {spec.name!r}: in {other.entrypoint.path} and in "
                    f"{spec.entrypoint.path}; rename one (flow names identify sensors and runs)."
                )
            specs[spec.name] = spec
    return list(specs.values())

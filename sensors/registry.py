"""Finding flows and event sources: what files and folders declare."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sensors.interop.metaflow import metaflow_flows
from triggers.declarations import flow_spec, is_flow
from triggers.errors import DeclarationError
from triggers.loader import load_file
from triggers.sources import EventSource, load_sources_file
from triggers.spec import FlowSpec

__all__ = ["discover", "discover_flows", "discover_sources", "flow_files"]


_YAML = (".yaml", ".yml")


def _is_sources_yaml(file: Path) -> bool:
    """Whether a YAML file in a folder declares sources: ``sources.yaml`` or ``*.sources.yaml``."""
    return file.suffix in _YAML and (file.stem == "sources" or file.stem.endswith(".sources"))


def _declaration_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files that ``paths`` name: files as given, folders searched recursively for
    Python files and sources YAML files.

    Files and folders whose name starts with ``_`` or ``.`` are skipped inside folders
    (``__init__.py``, ``__pycache__``, ``.venv``), as are ``test_*.py`` files.

    Raises:
        DeclarationError: a path does not exist or is neither Python nor YAML.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                parts = file.relative_to(path).parts
                if any(p.startswith(("_", ".")) for p in parts) or file.name.startswith("test_"):
                    continue
                if file.suffix == ".py" or _is_sources_yaml(file):
                    files.append(file)
        elif path.is_file() and (path.suffix == ".py" or path.suffix in _YAML):
            files.append(path)
        elif path.exists():
            raise DeclarationError(
                f"{path} is neither a Python file nor a YAML file of sources; give .py files, "
                "sources YAML files or folders."
            )
        else:
            raise DeclarationError(
                f"{path} does not exist; give the files or folders of your flows."
            )
    return files


def flow_files(paths: Iterable[str | Path]) -> list[Path]:
    """The Python files that ``paths`` name (see :func:`_declaration_files`)."""
    return [file for file in _declaration_files(paths) if file.suffix == ".py"]


def discover_sources(paths: Iterable[str | Path]) -> list[EventSource]:
    """The event sources declared under ``paths``: in YAML files (a top-level ``sources:``
    list) and as :class:`EventSource` objects at the top level of Python files.

    Raises:
        DeclarationError: a source is invalid, or two different sources share a name.
    """
    return _sources_in(_declaration_files(paths))


def discover(paths: Iterable[str | Path]) -> tuple[list[FlowSpec], list[EventSource]]:
    """The flows and the event sources declared under ``paths``, walking them once."""
    files = _declaration_files(paths)
    return _flows_in([f for f in files if f.suffix == ".py"]), _sources_in(files)


def _sources_in(files: list[Path]) -> list[EventSource]:
    found: dict[str, tuple[EventSource, Path]] = {}
    for file in files:
        if file.suffix == ".py":
            declared = [v for v in vars(load_file(file)).values() if isinstance(v, EventSource)]
        else:
            declared = load_sources_file(file)
        for spec in declared:
            other = found.get(spec.name)
            if other is not None and other[0] != spec:
                raise DeclarationError(
                    f"two sources are named {spec.name!r}: in {other[1]} and in {file}; "
                    "rename one (source names identify consumers and their status)."
                )
            found[spec.name] = (spec, file)
    return [spec for spec, _ in found.values()]


def discover_flows(paths: Iterable[str | Path]) -> list[FlowSpec]:
    """Import every flow file under ``paths`` and return the specs of the flows they declare.

    A flow is a function decorated with ``@trigger`` (or another tripwire decorator)
    defined at the top level of a file, or a Metaflow ``FlowSpec`` class defined there
    (:mod:`sensors.interop.metaflow`). Importing the same function under two names
    declares it once.

    Raises:
        DeclarationError: two different flows share a name (flow names identify runs
            and sensors), or a path is missing.
    """
    return _flows_in(flow_files(paths))


def _flows_in(files: list[Path]) -> list[FlowSpec]:
    specs: dict[str, FlowSpec] = {}
    for file in files:
        module = load_file(file)
        found = [
            flow_spec(value, path=file)
            for value in vars(module).values()
            if is_flow(value) and value.__module__ == module.__name__
        ]
        for spec in [*found, *metaflow_flows(module, file)]:
            other = specs.get(spec.name)
            if other is not None and other.entrypoint != spec.entrypoint:
                raise DeclarationError(
                    f"two flows are named {spec.name!r}: in {other.entrypoint.path} and in "
                    f"{spec.entrypoint.path}; rename one (flow names identify sensors and runs)."
                )
            specs[spec.name] = spec
    return list(specs.values())

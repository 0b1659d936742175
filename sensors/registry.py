"""Finding flows and event sources: what files and folders declare."""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import triggers
from sensors.interop.metaflow import metaflow_flows
from sensors.runs.import_problems import ImportProblem
from triggers.declarations import flow_spec, is_flow
from triggers.error_text import exception_text
from triggers.errors import DeclarationError
from triggers.loader import load_file
from triggers.locations import shown_path
from triggers.sources import EventSource, load_sources_file
from triggers.spec import FlowSpec

__all__ = [
    "Declarations",
    "FlowImportError",
    "discover",
    "discover_flows",
    "declaration_files",
    "discover_sources",
    "flow_files",
    "import_problem",
    "load_declarations",
    "users_file",
]


_YAML = (".yaml", ".yml")


def _is_sources_yaml(file: Path) -> bool:
    """Whether a YAML file in a folder declares sources: ``sources.yaml`` or ``*.sources.yaml``."""
    return file.suffix in _YAML and (file.stem == "sources" or file.stem.endswith(".sources"))


def declaration_files(paths: Iterable[str | Path]) -> list[Path]:
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
    """The Python files that ``paths`` name (see :func:`declaration_files`)."""
    return [file for file in declaration_files(paths) if file.suffix == ".py"]


def discover_sources(paths: Iterable[str | Path]) -> list[EventSource]:
    """The event sources declared under ``paths``: in YAML files (a top-level ``sources:``
    list) and as :class:`EventSource` objects at the top level of Python files.

    Raises:
        DeclarationError: a path is missing; :class:`FlowImportError`: a file failed to
            load, or two different sources share a name.
    """
    return discover(paths)[1]


def discover_flows(paths: Iterable[str | Path]) -> list[FlowSpec]:
    """Import every flow file under ``paths`` and return the specs of the flows they declare.

    A flow is a function decorated with ``@trigger`` (or another tripwire decorator)
    defined at the top level of a file, or a Metaflow ``FlowSpec`` class defined there
    (:mod:`sensors.interop.metaflow`). Importing the same function under two names
    declares it once.

    Raises:
        DeclarationError: a path is missing; :class:`FlowImportError`: a file failed to
            load, or two different flows share a name (names identify sensors and runs).
    """
    return discover(flow_files(paths))[0]


def discover(
    paths: Iterable[str | Path], *, outcome: str = "nothing was loaded"
) -> tuple[list[FlowSpec], list[EventSource]]:
    """The flows and the event sources declared under ``paths``, all or nothing.

    Raises:
        DeclarationError: a path is missing; :class:`FlowImportError`: any file failed to
            load (every one is named, in one pass, and the message says ``outcome``).
    """
    found = load_declarations(paths)
    if found.problems:
        raise FlowImportError(found.problems, outcome)
    return found.flows, found.sources


class FlowImportError(DeclarationError):
    """Raised when flow or sources files fail to load; ``problems`` names each."""

    def __init__(self, problems: Sequence[ImportProblem], outcome: str) -> None:
        self.problems = list(problems)
        what = "a file" if len(problems) == 1 else f"{len(problems)} files"
        them = "it" if len(problems) == 1 else "them"
        lines = "".join(f"\n  {problem.short()}" for problem in self.problems)
        super().__init__(f"{what} failed to load, so {outcome}; fix {them} and try again:{lines}")


@dataclass(frozen=True)
class Declarations:
    """What the files under some paths declare, and the files that failed to load."""

    by_file: dict[str, tuple[list[FlowSpec], list[EventSource]]]
    """The flows and sources of each file that loaded, by its :func:`shown_path`."""
    problems: list[ImportProblem]

    @property
    def flows(self) -> list[FlowSpec]:
        # One function imported by two files is one flow.
        return list(
            {spec.name: spec for flows, _ in self.by_file.values() for spec in flows}.values()
        )

    @property
    def sources(self) -> list[EventSource]:
        return list({s.name: s for _, sources in self.by_file.values() for s in sources}.values())


def load_declarations(paths: Iterable[str | Path]) -> Declarations:
    """Load every file under ``paths`` on its own: one that raises, or declares a flow or
    source whose name another file took first, becomes an :class:`ImportProblem`, and
    the others load.

    Raises:
        DeclarationError: a path does not exist or is neither Python nor YAML.
    """
    flows: dict[str, FlowSpec] = {}
    sources: dict[str, tuple[EventSource, Path]] = {}
    problems: list[ImportProblem] = []
    by_file: dict[str, tuple[list[FlowSpec], list[EventSource]]] = {}
    for file in declaration_files(paths):
        try:
            found, declared = _declared_in(file)
            _refuse_taken_names(found, declared, flows, sources)
        except Exception as exc:  # a flow file may raise anything while it is imported
            problems.append(import_problem(file, exc))
            continue
        except SystemExit as exc:  # and may call sys.exit()
            problems.append(import_problem(file, exc))
            continue
        flows.update((spec.name, spec) for spec in found)
        sources.update((source.name, (source, file)) for source in declared)
        by_file[shown_path(file)] = (found, declared)
    return Declarations(by_file, problems)


def _declared_in(file: Path) -> tuple[list[FlowSpec], list[EventSource]]:
    if file.suffix != ".py":
        return [], load_sources_file(file)
    # As the run process will: with only this file's own folders on sys.path (another flow
    # file's folder must not make an import work here that fails there)
    path = list(sys.path)
    try:
        module = load_file(file)
    finally:
        sys.path[:] = path
    found = {
        spec.name: spec
        for spec in [
            *(
                flow_spec(value, path=file)
                for value in vars(module).values()
                if is_flow(value) and value.__module__ == module.__name__
            ),
            *metaflow_flows(module, file),
        ]
    }
    declared = [v for v in vars(module).values() if isinstance(v, EventSource)]
    return list(found.values()), declared


def _refuse_taken_names(
    found: list[FlowSpec],
    declared: list[EventSource],
    flows: dict[str, FlowSpec],
    sources: dict[str, tuple[EventSource, Path]],
) -> None:
    for spec in found:
        other = flows.get(spec.name)
        if other is not None and other.entrypoint != spec.entrypoint:
            raise DeclarationError(
                f"flow {spec.name!r} is declared in {shown_path(other.entrypoint.path or '')} "
                "already; rename one (flow names identify sensors and runs)."
            )
    for source in declared:
        taken = sources.get(source.name)
        if taken is not None and taken[0] != source:
            raise DeclarationError(
                f"source {source.name!r} is declared in {shown_path(taken[1])} already; rename "
                "one (source names identify consumers and their status)."
            )


def import_problem(file: Path, exc: BaseException) -> ImportProblem:
    """What went wrong in ``file``, pointing at the user's own code: the last frame of the
    traceback that is neither tripwire's, nor the standard library's, nor an installed
    package's."""
    path = shown_path(file)
    # A declaration error is tripwire's own: its type adds nothing
    text = str(exc) if isinstance(exc, DeclarationError) else exception_text(exc)
    error = " ".join(text.split())
    here = file.resolve()
    line, where = None, ""
    if isinstance(exc, DeclarationError) and exc.path == path:
        line = exc.line  # a YAML file's, which no frame of the traceback names
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == here:
        line, where = exc.lineno, (exc.text or "").strip()
        error = f"SyntaxError: {exc.msg}"
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if Path(f.filename).resolve() == here]
        users = [f for f in frames if users_file(f.filename)]
        if ours:
            line = ours[-1].lineno
        if users:
            last = users[-1]
            code = (last.line or "").strip()
            same = Path(last.filename).resolve() == here
            where = code if same else f"{shown_path(last.filename)}:{last.lineno}: {code}"
    return ImportProblem(
        path=path,
        line=line,
        error=error,
        traceback="".join(traceback.format_exception(exc)),
        seen_at=datetime.now(UTC),
        where=where,
    )


_NOT_USERS = tuple(
    str(Path(p).resolve()) + os.sep
    for p in {
        *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")),
        triggers.__path__[0],
        os.path.dirname(__file__),
    }
)


def users_file(filename: str) -> bool:
    """Whether a traceback's frame is in the user's code."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    return not str(Path(filename).resolve()).startswith(_NOT_USERS)

"""``tripwire dev`` follows edits: a flow file saved, added or deleted, or a module of the
user's that one imports, is loaded again and deployed, and each change is told in one line.

The files are watched with watchfiles (the OS's notifications, not polling). A reload
imports the user's code afresh: the modules that the last load of the flow files added
and that are the user's own (neither tripwire's, nor the standard library's, nor an
installed package's, wherever those live) are dropped first, so an edited helper module
is read again too; local runs then start from the new code (:meth:`Engine.code_changed`).
Files load in the event loop's thread, as at start: a flow file may set signal handlers.

A file that fails to load keeps what it declared when it last loaded, flows and sources
(a typo mid-edit does not retire a sensor and the events it holds); a deleted file's are
retired. What failed is recorded in the store (:mod:`sensors.runs.import_problems`)
until it is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from watchfiles import Change, DefaultFilter, awatch

from sensors.registry import Declarations, declaration_files, load_declarations, users_file
from sensors.runs.deploy import deploy
from sensors.runs.import_problems import record_import_problems
from sensors.runs.store import RunStore
from sensors.sources.store import deploy_sources
from triggers.errors import DeclarationError
from triggers.locations import shown_path
from triggers.settings import Settings
from triggers.sources import EventSource
from triggers.spec import FlowSpec

__all__ = ["FlowReloader", "flow_changes", "load_tracked", "source_changes"]

log = logging.getLogger(__name__)

_SHOWN_CHANGES = 4  # field changes a line shows of one flow; then "and N more"
_SLOW_LOAD = 2.0  # seconds of loading the flow files that are worth a warning


_CODE = (".py", ".yaml", ".yml")


class _Code(DefaultFilter):
    """Python and YAML files, and folders (one moved in or out brings or takes files);
    DefaultFilter leaves out .git, caches and virtualenvs."""

    def __call__(self, change: Change, path: str) -> bool:
        return super().__call__(change, path) and (path.endswith(_CODE) or not Path(path).is_file())


def load_tracked(paths: Sequence[str | Path]) -> tuple[Declarations, set[str]]:
    """Load the declarations under ``paths``; return them and the names of the modules of
    the user's own that the load imported (the flow files and the helpers they import)."""
    before = set(sys.modules)
    found = load_declarations(paths)
    added = {
        name
        for name in set(sys.modules) - before
        if users_file(getattr(sys.modules[name], "__file__", None) or "<none>")
    }
    return found, added


class FlowReloader:
    """Reloads and redeploys the flows under ``paths`` when their files change."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        settings: Settings,
        store: RunStore,
        loaded: tuple[Declarations, set[str]],
        *,
        serve: Callable[[], Awaitable[None]],
        code_changed: Callable[[], None],
        say: Callable[[str, str], None],
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.settings = settings
        self.store = store
        self.found, self._modules = loaded
        self._serve = serve
        self._code_changed = code_changed
        self._say = say
        self.roots = sorted({(p if p.is_dir() else p.parent).resolve() for p in self.paths})
        self.watching = asyncio.Event()
        """Set once the watcher runs: a change made after it is seen."""

    async def watch(self) -> None:
        """Reload on every change of the files loaded (or to load), until cancelled."""
        stop = asyncio.Event()  # ends the watcher's thread when this task is cancelled
        try:
            async for changes in awatch(
                *self.roots,
                watch_filter=_Code(),
                stop_event=stop,
                debounce=300,
                step=50,
                yield_on_timeout=True,  # an empty set: the watcher runs
                rust_timeout=1000,
            ):
                self.watching.set()
                changed = self._relevant({path for _, path in changes})
                if not changed:
                    continue
                try:
                    await self.reload(changed)
                except Exception:  # a reload must never stop dev: the next save tries again
                    log.exception("reloading after %s changed failed", ", ".join(changed))
        finally:
            stop.set()

    def _relevant(self, changed: set[str]) -> list[str]:
        """Of ``changed``, the files the last load read, and the ones the next would; every
        code file while a file fails (the fix may be in one it imports, which did not load);
        all of them when a folder moved in or out. An editor's temporary file is none."""
        read = {getattr(sys.modules.get(name), "__file__", None) for name in self._modules}
        known = {str(Path(f).resolve()) for f in read if f}
        with contextlib.suppress(DeclarationError):  # a watched path is gone: reload says so
            known |= {str(file.resolve()) for file in declaration_files(self.paths)}
        known |= {str(Path(path).resolve()) for path in self.found.by_file}
        known |= {str(Path(problem.path).resolve()) for problem in self.found.problems}
        code = {path for path in changed if path.endswith(_CODE)}
        folders = {path for path in changed - code if _held(path, known)}
        if self.found.problems or folders:
            return sorted(code | folders)
        return sorted(path for path in code if str(Path(path).resolve()) in known)

    async def record(self) -> None:
        """Record the import problems of the last load in the store."""
        s = self.settings
        await record_import_problems(
            self.store, self.found.problems, project=s.project, domain=s.domain
        )

    async def reload(self, changed: Sequence[str]) -> None:
        """Load the files again, deploy what they declare, serve it, and say what changed."""
        s = self.settings
        changed = sorted({shown_path(path) for path in changed})
        before = self.found
        _forget(self._modules)
        started = time.monotonic()
        try:
            found, self._modules = load_tracked(self.paths)
        except DeclarationError as exc:  # a watched path itself was removed
            self._say("reload failed", str(exc))
            return
        took = time.monotonic() - started
        if took > _SLOW_LOAD:  # the engine waited: files load in its thread (see above)
            log.warning("loading the flow files took %.1fs, and the engine waited meanwhile", took)
        found = _keep_last_good(before, found)
        try:
            await deploy(self.store, found.flows, project=s.project, domain=s.domain, prune=True)
            await deploy_sources(
                self.store, found.sources, project=s.project, domain=s.domain, prune=True
            )
        except DeclarationError as exc:  # e.g. a trigger_on_finish cycle across flows
            self._say("not deployed", str(exc))
            return
        self.found = found
        await self.record()
        await self._serve()
        if any(path.endswith(".py") for path in changed):
            self._code_changed()
        self._tell(before, found, changed)

    def _tell(self, before: Declarations, found: Declarations, changed: list[str]) -> None:
        lines = flow_changes(before.flows, found.flows) + source_changes(
            before.sources, found.sources
        )
        failing = {problem.path for problem in found.problems}
        was_failing = {problem.path for problem in before.problems}
        for path in sorted(was_failing - failing):
            lines.append(f"{path} loads now" if Path(path).exists() else f"{path} is gone")
        if (
            not lines
            and failing <= was_failing
            and any(
                path.endswith(".py") and path not in failing and Path(path).exists()
                for path in changed
            )
        ):
            lines = ["no trigger changed; the next runs use the new code"]
        if lines:
            self._say("reloaded", f"{', '.join(changed)}: " + "; ".join(lines))
        for problem in found.problems:
            kept = [spec.name for spec in found.by_file.get(problem.path, ([], []))[0]]
            also = (
                f" (its flows {', '.join(kept)} stay deployed, and their runs fail until it loads)"
                if kept
                else ""
            )
            self._say("import error", f"{problem.short()}{also}")


def _held(path: str, known: set[str]) -> bool:
    """Whether ``path`` is a folder, or was one that held files the loads read."""
    inside = f"{Path(path).resolve()}/"
    return Path(path).is_dir() or any(file.startswith(inside) for file in known)


def _forget(modules: Iterable[str]) -> None:
    """Drop ``modules``, so that the next import reads their files again."""
    for name in modules:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()  # a new file in a folder is found


def _keep_last_good(before: Declarations, now: Declarations) -> Declarations:
    """``now``, plus what files that loaded before and fail now declared then (less what
    another file declares now)."""
    flows = {spec.name for spec in now.flows}
    sources = {source.name for source in now.sources}
    by_file = dict(now.by_file)
    for problem in now.problems:
        if problem.path in before.by_file:
            was_flows, was_sources = before.by_file[problem.path]
            by_file[problem.path] = (
                [spec for spec in was_flows if spec.name not in flows],
                [source for source in was_sources if source.name not in sources],
            )
    return Declarations(by_file, now.problems)


def flow_changes(before: Iterable[FlowSpec], after: Iterable[FlowSpec]) -> list[str]:
    """One line per flow added, retired or changed: ``~ etl: within 1h → 2h``."""
    old = {spec.name: spec for spec in before}
    new = {spec.name: spec for spec in after}
    lines = [f"+ {name} <- {_waits_for(new[name])}" for name in sorted(new.keys() - old.keys())]
    lines += [f"- {name} (retired)" for name in sorted(old.keys() - new.keys())]
    for name in sorted(old.keys() & new.keys()):
        was, now = _flat(old[name]), _flat(new[name])
        changed = []
        if _waits_for(old[name]) != _waits_for(new[name]):
            # Another event: its fields all differ, and say nothing the names do not
            changed.append(f"waits for {_waits_for(old[name])} → {_waits_for(new[name])}")
            was = {k: v for k, v in was.items() if "dependencies[" not in k}
            now = {k: v for k, v in now.items() if "dependencies[" not in k}
        changed += _whole_items(was, now)
        changed += [
            f"{key} {_shown(was.get(key))} → {_shown(now.get(key))}"
            for key in sorted(was.keys() | now.keys())
            if was.get(key) != now.get(key)
        ]
        if changed:
            more = len(changed) - _SHOWN_CHANGES
            tail = f", and {more} more" if more > 0 else ""
            lines.append(f"~ {name}: {', '.join(changed[:_SHOWN_CHANGES])}{tail}")
    return lines


def _whole_items(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """A named item (``parameters[n]``) on one side only, as one change (``+ parameters[n]``);
    its fields, and the empty list it was added to or emptied, are taken out of both."""
    old, new = _items(was), _items(now)
    said = [f"+ {item}" for item in sorted(new - old)] + [f"- {item}" for item in sorted(old - new)]
    gone = tuple(f"{item}." for item in (old ^ new))
    lists = {item[: item.rindex("[")] for item in old | new}  # e.g. "parameters"
    for flat in (was, now):
        for key in [k for k in flat if k.startswith(gone) or (k in lists and not flat[k])]:
            del flat[key]
    return said


def _items(flat: dict[str, Any]) -> set[str]:
    return {key[: i + 1] for key in flat for i, c in enumerate(key) if c == "]"}


def source_changes(before: Iterable[EventSource], after: Iterable[EventSource]) -> list[str]:
    """One line per event source added, retired or changed."""
    old = {source.name: source for source in before}
    new = {source.name: source for source in after}
    lines = [f"+ source {name}" for name in sorted(new.keys() - old.keys())]
    lines += [f"- source {name} (retired)" for name in sorted(old.keys() - new.keys())]
    lines += [
        f"~ source {name}" for name in sorted(old.keys() & new.keys()) if old[name] != new[name]
    ]
    return lines


def _waits_for(spec: FlowSpec) -> str:
    waits = [
        trig.schedule.describe()
        if trig.schedule is not None
        else " & ".join(d.name for d in trig.dependencies)
        for trig in spec.triggers
    ]
    return " | ".join(waits) or "nothing (runs by hand)"


def _flat(spec: FlowSpec) -> dict[str, Any]:
    """A flow's declaration as ``dotted.key: value``: triggers, dependencies and parameters
    keyed by name, so that a change reads as ``dependencies[data_updated].parameters``."""
    data = spec.model_dump(exclude={"entrypoint"})
    if len(spec.triggers) == 1:  # its one trigger's fields read as the flow's own
        data = {**data, **{"triggers": None}, **data["triggers"][0]}
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list | tuple) and value and all(_named(v) for v in value):
            for inner in value:
                walk(f"{prefix}[{_named(inner)}]", inner)
        else:
            flat[prefix] = value

    walk("", data)
    return flat


def _named(value: Any) -> str | None:
    if isinstance(value, dict):
        name = value.get("dep") or value.get("name")
        return name if isinstance(name, str) else None
    return None


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, timedelta):
        return _duration(value)
    return json.dumps(value, default=str)


def _duration(value: timedelta) -> str:
    """``2h``, ``1h30m``, ``90ms``: as a declaration would write it."""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count:g}{unit}")
    return "".join(parts) + (f"{seconds:g}s" if seconds else "")

"""``tripwire dev`` follows edits: a flow file saved, added or deleted is loaded again and
deployed, and each change of a flow is told in one line.

The files are watched with watchfiles (the OS's notifications, not polling). A reload
imports the user's modules afresh: every module loaded from under the watched folders is
dropped first, so that an edited helper module is read again too. A file that fails to
load keeps its flows as they last loaded (a typo mid-edit does not retire a sensor and
its held events); a deleted file's flows are retired. What failed is recorded in the
store (:mod:`sensors.runs.import_problems`) until it is fixed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from watchfiles import Change, DefaultFilter, awatch

from sensors.registry import Declarations, load_declarations
from sensors.runs.deploy import deploy, deployed_sensors
from sensors.runs.import_problems import record_import_problems
from sensors.runs.store import RunStore
from sensors.sources.store import deploy_sources
from triggers.errors import DeclarationError
from triggers.locations import shown_path
from triggers.settings import Settings
from triggers.spec import FlowSpec

__all__ = ["FlowReloader", "flow_changes"]

log = logging.getLogger(__name__)

_SHOWN_CHANGES = 4  # field changes a line shows of one flow; then "and N more"


class _FlowFiles(DefaultFilter):
    """Python files and sources YAML files, as the registry reads them."""

    def __call__(self, change: Change, path: str) -> bool:
        name = Path(path).name
        return (
            super().__call__(change, path)
            and name.endswith((".py", ".yaml", ".yml"))
            and not name.startswith(("_", ".", "test_"))
        )


class FlowReloader:
    """Reloads and redeploys the flows under ``paths`` when their files change."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        settings: Settings,
        store: RunStore,
        found: Declarations,
        *,
        serve: Callable[[list[Any]], None],
        say: Callable[[str, str], None],
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.settings = settings
        self.store = store
        self.found = found
        self._serve = serve
        self._say = say
        self.roots = sorted({(p if p.is_dir() else p.parent).resolve() for p in self.paths})

    async def watch(self) -> None:
        """Reload on every change under the watched paths, until cancelled."""
        stop = asyncio.Event()  # ends the watcher's thread when this task is cancelled
        try:
            async for changes in awatch(
                *self.roots, watch_filter=_FlowFiles(), stop_event=stop, debounce=300, step=50
            ):
                changed = sorted({path for _, path in changes})
                try:
                    await self.reload(changed)
                except Exception:  # a reload must never stop dev: the next save tries again
                    log.exception("reloading after %s changed failed", ", ".join(changed))
        finally:
            stop.set()

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
        _forget_modules(self.roots)
        try:
            found = await asyncio.to_thread(load_declarations, self.paths)
        except DeclarationError as exc:  # a watched path itself was removed
            self._say("reload failed", str(exc))
            return
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
        self._serve(await deployed_sensors(self.store, project=s.project, domain=s.domain))
        lines = flow_changes(before.flows, found.flows)
        failed = {problem.path for problem in found.problems}
        if not lines and not failed.issuperset(changed):
            lines = ["no trigger changed; the next runs use the new code"]
        if lines:
            self._say("reloaded", f"{', '.join(changed)}: " + "; ".join(lines))
        for problem in found.problems:
            kept = before.loaded.get(problem.path, [])
            also = f" (still serving its last good flows: {', '.join(kept)})" if kept else ""
            self._say("import error", f"{problem.short()}{also}")


def _forget_modules(roots: Iterable[Path]) -> None:
    """Drop the modules loaded from under ``roots``, so that the next import reads them."""
    prefixes = tuple(f"{root}/" for root in roots)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and str(Path(file).resolve()).startswith(prefixes):
            del sys.modules[name]
    importlib.invalidate_caches()  # a new file in a folder is found


def _keep_last_good(before: Declarations, now: Declarations) -> Declarations:
    """``now``, plus the flows of files that loaded before and fail now."""
    failing = {problem.path for problem in now.problems}
    declared = {spec.name for spec in now.flows}
    loaded = dict(now.loaded)
    kept = []
    for path, names in before.loaded.items():
        if path in failing:
            loaded[path] = [name for name in names if name not in declared]
            kept += [spec for spec in before.flows if spec.name in loaded[path]]
    return Declarations([*now.flows, *kept], now.sources, now.problems, loaded)


def flow_changes(before: Iterable[FlowSpec], after: Iterable[FlowSpec]) -> list[str]:
    """One line per flow added, retired or changed: ``~ etl: within 3600 → 7200``."""
    old = {spec.name: spec for spec in before}
    new = {spec.name: spec for spec in after}
    lines = []
    for name in sorted(new.keys() - old.keys()):
        lines.append(f"+ {name} <- {_waits_for(new[name])}")
    for name in sorted(old.keys() - new.keys()):
        lines.append(f"- {name} (retired)")
    for name in sorted(old.keys() & new.keys()):
        was, now = _flat(old[name]), _flat(new[name])
        changed = [
            f"{key} {_shown(was.get(key))} → {_shown(now.get(key))}"
            for key in sorted(was.keys() | now.keys())
            if was.get(key) != now.get(key)
        ]
        if changed:
            more = len(changed) - _SHOWN_CHANGES
            tail = f", and {more} more" if more > 0 else ""
            lines.append(f"~ {name}: {', '.join(changed[:_SHOWN_CHANGES])}{tail}")
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
    keyed by name, so that a change reads as ``data_updated.parameters.window``."""
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

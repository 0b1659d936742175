"""``triggers.current``: what a running flow knows about its run.

Inside a run the engine started, ``current.run_name``, ``current.parameters``,
``current.event`` (the latest triggering event) and ``current.events`` (all of
them, each with its payload) are set. Outside a run they are None or empty,
so a flow still runs as plain Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from triggers.errors import ConfigurationError
from triggers.settings import get_settings

__all__ = ["Current", "RunContext", "TriggerEvent", "current"]


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """An event that contributed to this run."""

    name: str
    id: str
    time: datetime | None
    payload: dict[str, Any]
    dependency: str | None = None
    source: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TriggerEvent:
        raw_time = data.get("time")
        return cls(
            name=data["name"],
            id=data["id"],
            time=datetime.fromisoformat(raw_time) if raw_time else None,
            payload=data.get("payload") or {},
            dependency=data.get("dependency"),
            source=data.get("source"),
        )


@dataclass(frozen=True, slots=True)
class RunContext:
    """The run description the engine hands to a run's process."""

    run_name: str
    project: str
    domain: str
    flow: str
    parameters: dict[str, Any]
    events: tuple[TriggerEvent, ...]

    @classmethod
    def load(cls, path: Path) -> RunContext:
        try:
            data = json.loads(path.read_text())
            return cls(
                run_name=data["run_name"],
                project=data["project"],
                domain=data["domain"],
                flow=data["flow"],
                parameters=data.get("parameters") or {},
                events=tuple(TriggerEvent.from_dict(e) for e in data.get("events") or ()),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"run context {path} is unreadable: {exc}") from exc


class Current:
    """Accessor for the run context; every property is None/empty outside a run."""

    def __init__(self) -> None:
        self._context: RunContext | None = None
        self._loaded = False

    def _ctx(self) -> RunContext | None:
        if not self._loaded:
            path = get_settings().run_context
            self._context = RunContext.load(path) if path else None
            self._loaded = True
        return self._context

    def _bind(self, context: RunContext | None) -> None:
        """Set the context explicitly (used by the run entrypoint and tests)."""
        self._context, self._loaded = context, True

    @property
    def is_running(self) -> bool:
        """True inside a run started by the engine."""
        return self._ctx() is not None

    @property
    def run_name(self) -> str | None:
        ctx = self._ctx()
        return ctx.run_name if ctx else None

    @property
    def flow_name(self) -> str | None:
        ctx = self._ctx()
        return ctx.flow if ctx else None

    @property
    def project(self) -> str | None:
        ctx = self._ctx()
        return ctx.project if ctx else None

    @property
    def domain(self) -> str | None:
        ctx = self._ctx()
        return ctx.domain if ctx else None

    @property
    def parameters(self) -> dict[str, Any]:
        ctx = self._ctx()
        return dict(ctx.parameters) if ctx else {}

    @property
    def events(self) -> tuple[TriggerEvent, ...]:
        """All events that contributed to the run, oldest first."""
        ctx = self._ctx()
        return ctx.events if ctx else ()

    @property
    def event(self) -> TriggerEvent | None:
        """The latest contributing event."""
        events = self.events
        return events[-1] if events else None

    def __repr__(self) -> str:
        return f"<current run={self.run_name!r} flow={self.flow_name!r}>"


current = Current()

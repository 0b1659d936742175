"""``triggers.current``: what a running flow knows about its run.

Inside a run the engine started, ``current.run_name``, ``current.parameters``,
``current.event`` (the latest triggering event) and ``current.events`` (all of
them, each with its payload) are set; for ``trigger_on_finish``, ``current.run``
is the upstream run that finished (``current.runs`` all of them); for
``@schedule``, ``current.scheduled_at`` is the tick; for thresholds, absences
and debounce, ``current.count``, ``current.event_ids``, ``current.window`` and
``current.coalesced_event_ids`` say how it fired; ``current.traceparent`` is the
W3C trace context the run joins. Outside a run
they are None or empty, so a flow still runs as plain Python.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from triggers.errors import ConfigurationError
from triggers.spec import RUN_EVENT_TYPE

__all__ = [
    "TRACE_CARRIER",
    "Current",
    "RunContext",
    "TriggerEvent",
    "UpstreamRun",
    "current",
    "trace_carrier",
]


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
class UpstreamRun:
    """A finished run whose lifecycle event triggered this one (``trigger_on_finish``)."""

    name: str
    project: str
    domain: str
    flow: str
    phase: str
    finished_at: datetime | None
    output_uri: str | None
    error: dict[str, Any] | None

    @classmethod
    def from_event(cls, event: TriggerEvent) -> UpstreamRun | None:
        """The run an event describes, or None for an event that is not a run's."""
        data = event.payload
        run = data.get("execution_id")
        if not event.name.startswith(RUN_EVENT_TYPE) or not isinstance(run, dict):
            return None
        at = data.get("occurred_at")
        return cls(
            name=run["name"],
            project=run["project"],
            domain=run["domain"],
            flow=data.get("flow", ""),
            phase=data.get("phase", ""),
            finished_at=datetime.fromisoformat(at) if at else None,
            output_uri=data.get("output_uri"),
            error=data.get("error"),
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
    scheduled_at: datetime | None = None
    trigger_info: dict[str, Any] | None = None

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
                scheduled_at=(
                    datetime.fromisoformat(data["scheduled_at"])
                    if data.get("scheduled_at")
                    else None
                ),
                trigger_info=data.get("trigger_info"),
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
            from triggers.settings import get_settings  # settings cost 0.1 s: on first use

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

    @property
    def scheduled_at(self) -> datetime | None:
        """For a run of ``@schedule``: the tick it runs for."""
        ctx = self._ctx()
        return ctx.scheduled_at if ctx else None

    @property
    def trigger_info(self) -> dict[str, Any]:
        """How a threshold, absence or debounce fired (see the properties below); empty
        for other runs."""
        ctx = self._ctx()
        return dict(ctx.trigger_info or {}) if ctx else {}

    @property
    def count(self) -> int | None:
        """For a threshold run: how many events reached the threshold."""
        count = self.trigger_info.get("count")
        return int(count) if count is not None else None

    @property
    def event_ids(self) -> tuple[str, ...]:
        """The ids of every event that contributed: for a threshold all it counted, for a
        debounced run those of every coalesced fire; else those of ``events``."""
        info = self.trigger_info
        ids = info.get("debounce", {}).get("coalesced_event_ids") or info.get("event_ids")
        return tuple(ids) if ids else tuple(e.id for e in self.events)

    @property
    def coalesced_event_ids(self) -> tuple[str, ...]:
        """For a debounced run: the ids of the events of every fire it coalesced."""
        return tuple(self.trigger_info.get("debounce", {}).get("coalesced_event_ids") or ())

    @property
    def window(self) -> tuple[datetime, datetime] | None:
        """For an absence run: the window ``(start, end)`` in which the event did not come."""
        info = self.trigger_info
        if info.get("kind") != "absence":
            return None
        return (
            datetime.fromisoformat(info["window_start"]),
            datetime.fromisoformat(info["window_end"]),
        )

    @property
    def traceparent(self) -> str | None:
        """The W3C trace context the run joins (``00-TRACEID-SPANID-FLAGS``): its attempt's
        span when the worker records spans, else the run's own; None outside a run and
        for a run without one. Pass it on to join the run's trace."""
        return trace_carrier().get("traceparent") if self._ctx() else None

    @property
    def tracestate(self) -> str | None:
        """The W3C tracestate that goes with :attr:`traceparent`, if any."""
        return trace_carrier().get("tracestate") if self._ctx() else None

    @property
    def runs(self) -> tuple[UpstreamRun, ...]:
        """The upstream runs that triggered this one (``trigger_on_finish``), oldest first."""
        found = (UpstreamRun.from_event(e) for e in self.events)
        return tuple(run for run in found if run is not None)

    @property
    def run(self) -> UpstreamRun | None:
        """The latest upstream run that triggered this one, if any."""
        runs = self.runs
        return runs[-1] if runs else None

    def __repr__(self) -> str:
        return f"<current run={self.run_name!r} flow={self.flow_name!r}>"


current = Current()


TRACE_CARRIER = ("TRACEPARENT", "TRACESTATE")
"""OpenTelemetry's environment-variable carrier of the W3C trace context: what the engine
sets for a run's process (sensors.launchers.spans), and what the process reads here."""


def trace_carrier() -> dict[str, str]:
    """The W3C trace context the engine gave this run's process, in OpenTelemetry's
    environment-variable carrier (``TRACEPARENT``, ``TRACESTATE``), as the propagator's
    ``traceparent`` and ``tracestate`` keys; empty when it gave none."""
    carrier = {}
    for name in TRACE_CARRIER:
        if value := os.environ.get(name):
            carrier[name.lower()] = value
    return carrier if "traceparent" in carrier else {}

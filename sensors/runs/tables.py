"""The run store's schema, shared by the store and its migrations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from sensors.runs.models import NewRun, RunError
    from sensors.runs.phases import AttemptPhase, WorkflowPhase

__all__ = [
    "ROWS",
    "activity_events",
    "activity_marks",
    "activity_offers",
    "consumed_events",
    "dialect_insert",
    "end_all_waits",
    "filter_counts",
    "flow_import_problems",
    "flows",
    "live",
    "metadata",
    "named",
    "phase_change",
    "phase_row",
    "projects",
    "RunRef",
    "run_attempts",
    "run_phases",
    "run_ref",
    "run_signals",
    "runs",
    "schedule_state",
    "sensor_holds",
    "sensors",
    "source_leases",
    "source_status",
    "sources",
    "state_snapshots",
    "trigger_failures",
    "unmatched_mappings",
    "workers",
]

ROWS = 200  # rows per multi-row statement: SQLite binds at most 32,766 values in one

metadata = sa.MetaData()
_TS = sa.DateTime(timezone=True)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("domain", sa.String(200), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("flow", sa.String(200), nullable=False),
    sa.Column("sensor_id", sa.String(400)),
    sa.Column("trigger", sa.String(200)),
    sa.Column("target", sa.String(500), nullable=False),
    sa.Column("entrypoint", sa.JSON, nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("phase", sa.String(20), nullable=False),
    sa.Column("error", sa.JSON),
    sa.Column("pid", sa.Integer),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("started_at", _TS),
    sa.Column("finished_at", _TS),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_backoff_seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("timeout_seconds", sa.Float),
    sa.Column("abort_cause", sa.Text),
    sa.Column("inputs_uri", sa.String(1000)),
    sa.Column("flow_revision", sa.Integer),
    sa.Column("recovered_from", sa.String(253)),
    sa.Column("scheduled_at", _TS),
    sa.Column("trigger_info", sa.JSON),
    sa.Column("target_options", sa.JSON),
    sa.Column("rate_limit_count", sa.Integer),
    sa.Column("rate_limit_seconds", sa.Float),
    sa.Column("max_concurrency", sa.Integer),
    sa.Column("claimed_by", sa.String(300)),
    sa.Column("outputs", sa.JSON),
    sa.Column("traceparent", sa.Text),
    sa.Column("tracestate", sa.Text),
    # The exactly-once guarantee: one run per deterministic name.
    sa.UniqueConstraint("project", "domain", "name", name="uq_runs_name"),
    sa.Index("ix_runs_sensor_created", "sensor_id", "created_at"),
    sa.Index("ix_runs_phase", "phase"),
    sa.Index("ix_runs_created", "created_at"),
)

trigger_failures = sa.Table(
    "trigger_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sensor_id", sa.String(400), nullable=False),
    sa.Column("event_name", sa.String(255), nullable=False),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    # A redelivered event records its failure once.
    sa.UniqueConstraint("sensor_id", "event_id", name="uq_trigger_failures_event"),
    sa.Index("ix_trigger_failures_created", "created_at"),
)

# Which run consumed each event of a sensor: at most one, whichever worker decided it
# (a stale owner of a partition, or one with an older definition, may name another run).
consumed_events = sa.Table(
    "consumed_events",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("sensor_id", sa.String(400), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("run_name", sa.String(253), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
)

sensors = sa.Table(
    "sensors",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("sensor_id", sa.String(400), primary_key=True),
    sa.Column("flow", sa.String(200), nullable=False),
    sa.Column("trigger", sa.String(200), nullable=False),
    sa.Column("dependencies", sa.JSON, nullable=False),
    sa.Column("within_seconds", sa.Float, nullable=False),
    sa.Column("deployed_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("conditions", sa.Text),
    sa.Column("correlate_by", sa.JSON),
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("retired_at", _TS),
    sa.Column("schedule", sa.JSON),
    sa.Column("options", sa.JSON),
)

# What each sensor holds right now, per correlation key and dependency (for `sensors status`).
sensor_holds = sa.Table(
    "sensor_holds",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("sensor_id", sa.String(400), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("dep", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("event_time", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

# Where each key of a threshold, sequence, absence or debounce stands (`sensors status`).
sensor_progress = sa.Table(
    "sensor_progress",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("sensor_id", sa.String(400), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("count", sa.Integer),
    sa.Column("position", sa.Integer),
    sa.Column("deadline", _TS),
    sa.Column("debounce_until", _TS),
    sa.Column("coalesced", sa.Integer),
    sa.Column("updated_at", _TS, nullable=False),
)

# How many events each dependency filtered out, and the last reason.
filter_counts = sa.Table(
    "filter_counts",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("sensor_id", sa.String(400), primary_key=True),
    sa.Column("dep", sa.String(255), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("last_reason", sa.Text, nullable=False),
    sa.Column("last_event_id", sa.String(255), nullable=False),
    sa.Column("last_at", _TS, nullable=False),
)

# The attempts of each run (Flyte's TaskExecution): a retry is a new attempt.
run_attempts = sa.Table(
    "run_attempts",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("phase", sa.String(30), nullable=False),
    sa.Column("started_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("finished_at", _TS),
    sa.Column("error", sa.JSON),
    sa.Column("pid", sa.Integer),
    sa.Column("worker", sa.String(300)),
    sa.Column("link", sa.String(2000)),
    sa.Column("traceparent", sa.Text),
    sa.Column("tracestate", sa.Text),
)

# Every phase change of a run or of one of its attempts, in order. Also the outbox of
# lifecycle events: written in the transaction that changes the phase, published after.
run_phases = sa.Table(
    "run_phases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("domain", sa.String(200), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("flow", sa.String(200), nullable=False),
    sa.Column("attempt", sa.Integer),  # None: the run's own phase
    sa.Column("phase", sa.String(30), nullable=False),
    sa.Column("at", _TS, nullable=False),
    sa.Column("error", sa.JSON),
    sa.Column("published_at", _TS),
    sa.Index("ix_run_phases_run", "project", "domain", "name", "id"),
    sa.Index("ix_run_phases_unpublished", "published_at", "id"),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
)

# Every deployed revision of every flow; the current one has no retired_at.
flows = sa.Table(
    "flows",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("deployed_at", _TS, nullable=False),
    sa.Column("retired_at", _TS),
)


# Per scheduled trigger: the newest tick decided (``cursor``), and the ticks decided
# but maybe not yet fired (``pending``), so a worker taking over fires them.
schedule_state = sa.Table(
    "schedule_state",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("sensor_id", sa.String(400), primary_key=True),
    sa.Column("cursor", _TS, nullable=False),
    sa.Column("pending", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # compare-and-set between workers
    sa.Column("updated_at", _TS, nullable=False),
)

# The events runs wait for (``wait_for_event``) and the values they were signalled.
run_signals = sa.Table(
    "run_signals",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("run_name", sa.String(253), primary_key=True),
    sa.Column("action_name", sa.String(200), primary_key=True),  # "" for the run itself
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("expected_type", sa.String(10), nullable=False),
    sa.Column("phase", sa.String(20), nullable=False),
    sa.Column("value", sa.JSON),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("timeout_at", _TS),
    sa.Column("signalled_at", _TS),
)


class RunRef(NamedTuple):
    """A run as its history rows name it, where no record of it was read: ``flow`` is the
    SQL that reads it (:func:`run_ref`)."""

    project: str
    domain: str
    name: str
    flow: Any


def run_ref(project: str, domain: str, name: str) -> RunRef:
    flow = sa.select(runs.c.flow).where(*named(runs, project, domain, name)).scalar_subquery()
    return RunRef(project, domain, name, flow)


def phase_change(
    run: NewRun | RunRef,
    attempt: int | None,
    phase: WorkflowPhase | AttemptPhase,
    at: datetime,
    error: RunError | None = None,
) -> Any:
    """The INSERT that records one phase change of a run (``attempt`` None) or attempt."""
    return run_phases.insert().values(**phase_row(run, attempt, phase, at, error))


def phase_row(
    run: NewRun | RunRef,
    attempt: int | None,
    phase: WorkflowPhase | AttemptPhase,
    at: datetime,
    error: RunError | None = None,
) -> dict[str, Any]:
    """One phase change as a row of ``run_phases`` (see :func:`phase_change`)."""
    return {
        "project": run.project,
        "domain": run.domain,
        "name": run.name,
        "flow": run.flow,
        "attempt": attempt,
        "phase": phase.value,
        "at": at,
        "error": error.model_dump(mode="json") if error else None,
    }


# Deployed event sources, by revision, like flows: the current one has no retired_at.
sources = sa.Table(
    "sources",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("deployed_at", _TS, nullable=False),
    sa.Column("retired_at", _TS),
)

# What each process running a source last reported (`tripwire sources status`).
source_status = sa.Table(
    "source_status",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("instance", sa.String(300), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("since", _TS, nullable=False),
    sa.Column("messages_in", sa.BigInteger, nullable=False),
    sa.Column("events_out", sa.BigInteger, nullable=False),
    sa.Column("filtered", sa.BigInteger, nullable=False),
    sa.Column("dead_lettered", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("last_error_at", _TS),
    sa.Column("updated_at", _TS, nullable=False),
)

# Who runs a source that only one process may read at a time (MQTT, LISTEN), until when.
source_leases = sa.Table(
    "source_leases",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(300), nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
)

# The flow files that failed to import where they were last loaded, until they are fixed
# (sensors/runs/import_problems.py).
flow_import_problems = sa.Table(
    "flow_import_problems",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("line", sa.Integer),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("traceback", sa.Text, nullable=False),
    sa.Column("where", sa.Text),
    sa.Column("seen_at", _TS, nullable=False),
)

# Per sensor: the mapped parameters of its runs that kept their defaults, and the last one.
unmatched_mappings = sa.Table(
    "unmatched_mappings",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("sensor_id", sa.String(400), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("last", sa.Text, nullable=False),
    sa.Column("last_run", sa.String(253), nullable=False),
    sa.Column("last_at", _TS, nullable=False),
)


# Each worker's heartbeat: how a worker on another host learns that one stopped.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("started_at", _TS, nullable=False),
    sa.Column("heartbeat_at", _TS, nullable=False),
    sa.Column("gone_at", _TS),  # when a live worker found its heartbeat stale
)

# The latest snapshot of each changelog partition's correlation state, and who may save the
# next: ``claim`` moves on with each new owner (sensors/runs/snapshots.py).
state_snapshots = sa.Table(
    "state_snapshots",
    metadata,
    sa.Column("topic", sa.String(249), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("claim", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.String(300), nullable=False),
    sa.Column("claimed_at", _TS, nullable=False),
    sa.Column("changelog_offset", sa.BigInteger),  # the first record it does not cover
    sa.Column("data", sa.LargeBinary),
    sa.Column("key_count", sa.Integer),
    sa.Column("saved_at", _TS),
)


def end_all_waits(ended: Sequence[tuple[NewRun, WorkflowPhase]]) -> list[Any]:
    """The UPDATEs that end the waits of runs that reached their final phases unsignalled:
    one for the runs aborted (their waits end ABORTED), one for the others (FAILED)."""
    keys: dict[str, list[tuple[str, str, str]]] = {}
    for run, phase in ended:
        ended_as = "ABORTED" if phase.value == "ABORTED" else "FAILED"
        keys.setdefault(ended_as, []).append((run.project, run.domain, run.name))
    signal_key = sa.tuple_(run_signals.c.project, run_signals.c.domain, run_signals.c.run_name)
    return [
        run_signals.update()
        .where(signal_key.in_(runs_), run_signals.c.phase == "RUNNING")
        .values(phase=phase)
        for phase, runs_ in keys.items()
    ]


def live(table: sa.Table, project: str, domain: str) -> list[Any]:
    """The WHERE conditions that pick the current (not retired) rows of a deployment."""
    return [table.c.project == project, table.c.domain == domain, table.c.retired_at.is_(None)]


def named(table: sa.Table, project: str, domain: str, name: str) -> list[Any]:
    """The WHERE conditions that pick the rows of one named run (or flow) in ``table``."""
    return [table.c.project == project, table.c.domain == domain, table.c.name == name]


def dialect_insert(conn: AsyncConnection | Connection) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL alike)."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


# What the sensor stage saw, by the minute, for the event-flow graph's rates and the sensor
# page (sensors/runs/activity.py): events per CloudEvent source and name...
activity_events = sa.Table(
    "activity_events",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("minute", _TS, primary_key=True),
    sa.Column("source", sa.String(500), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# ...and events offered to each dependency of each sensor (the filtered ones not counted).
activity_offers = sa.Table(
    "activity_offers",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(200), primary_key=True),
    sa.Column("minute", _TS, primary_key=True),
    sa.Column("sensor_id", sa.String(400), primary_key=True),
    sa.Column("dep", sa.String(255), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# The latest events offered to or filtered out by each sensor's dependencies, for its
# timeline: one per dependency and batch of the sensor stage, the last event of the batch.
activity_marks = sa.Table(
    "activity_marks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("domain", sa.String(200), nullable=False),
    sa.Column("sensor_id", sa.String(400), nullable=False),
    sa.Column("dep", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # offered | filtered
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("at", _TS, nullable=False),
    sa.Index("ix_activity_marks_sensor", "project", "domain", "sensor_id", "at"),
    sa.Index("ix_activity_marks_at", "at"),
)

"""A run as the API, the web page and the CLI show it: its attempts, history and logs.

Plain queries that return data; :mod:`sensors.cli.render` and the web templates lay it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from sensors.launchers.base import REMOTE_FAMILIES, family_of, scheme_of
from sensors.launchers.process import run_dir
from sensors.runs import history as runs_history
from sensors.runs.models import Attempt, PhaseChange, RunRecord, UnmatchedMapping
from sensors.runs.store import RunStore
from sensors.runs.unmatched import kept_defaults
from triggers.errors import DeclarationError
from triggers.settings import get_settings
from triggers.spec import parse_duration

__all__ = ["RunDetail", "TaskLog", "parse_since", "run_detail", "run_logs"]


class TaskLog(BaseModel):
    """Where a run's log is (Flyte's TaskLog): a name and a URI."""

    name: str
    uri: str


class RunDetail(BaseModel):
    """A run with its attempts and phase history, as `tripwire runs get` shows it."""

    run: RunRecord
    attempts: list[Attempt]
    history: list[PhaseChange]
    logs: list[TaskLog] = Field(default_factory=list, description="Where its logs are.")

    @property
    def unmatched(self) -> list[UnmatchedMapping]:
        """The mapped parameters that kept their defaults because their source matched
        nothing (kept in the run's ``trigger_info``, which the JSON carries)."""
        return kept_defaults(self.run.trigger_info)


def run_logs(run: RunRecord, attempts: Sequence[Attempt] = ()) -> list[TaskLog]:
    """Where a run's logs are: the run folder's log for the targets a worker runs itself,
    the Job's pods or the Workflow in the cluster, or each attempt's page in the system
    that ran it (Prefect, Airflow, Dagster, Flyte)."""
    scheme = scheme_of(run.target)
    if scheme == "k8s":
        return [TaskLog(name="Kubernetes Job", uri=f"{run.target.rstrip('/')}/jobs/{run.name}")]
    if scheme == "argo":
        namespace = run.target.split("/")[2]
        return [TaskLog(name="Argo Workflow", uri=f"argo://{namespace}/workflows/{run.name}")]
    if family_of(run.target) in REMOTE_FAMILIES:
        return [
            TaskLog(name=f"{scheme} run of attempt {a.number}", uri=a.link)
            for a in attempts
            if a.link
        ]
    path = run_dir(get_settings(), run.name) / "run.log"
    return [TaskLog(name="run.log", uri=path.as_uri())]


async def run_detail(store: RunStore, name: str, *, project: str, domain: str) -> RunDetail:
    run = await store.get_run(name, project=project, domain=domain)
    attempts = await runs_history.attempts(store, run.project, run.domain, run.name)
    return RunDetail(
        run=run,
        attempts=attempts,
        history=await runs_history.history(store, run.project, run.domain, run.name),
        logs=run_logs(run, attempts),
    )


def parse_since(text: str, now: datetime) -> datetime:
    """``2026-11-23T08:00:00Z`` or a duration back from now (``90m``, ``1d``).

    Raises:
        ValueError: neither; the message shows both forms.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - parse_duration(text, what="since")
        except DeclarationError:
            raise ValueError(
                f"{text!r} is neither an ISO 8601 time (2026-11-23T08:00:00Z) nor a "
                "duration back from now (90m, 1d)"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)

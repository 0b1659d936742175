"""The checker: what the store, the run-events topic and the ledger hold, against the model.

It reports every difference, not the first: runs lost, runs made twice, runs the model
did not expect, runs with wrong parameters, runs that did not succeed, flows that ran
to the end other than once, and phase changes missing from the run-events topic or out
of order there.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from sensors.runs.models import PhaseChange, RunRecord
from sensors.runs.phases import WorkflowPhase
from tests.nemesis.model import Expected, Identity


def identity(run: RunRecord) -> Identity:
    """A run's logical identity (see :class:`~tests.nemesis.model.Identity`), read from the
    run as the store holds it."""
    info = run.trigger_info or {}
    if run.flow == "nm_count":
        made_from = info.get("event_ids", [])
    elif run.flow == "nm_settle":
        made_from = info.get("debounce", {}).get("coalesced_event_ids", [])
    elif run.flow == "nm_tick":
        made_from = [run.scheduled_at.astimezone(UTC).isoformat()] if run.scheduled_at else []
    elif run.flow == "nm_after":
        made_from = [e["payload"]["execution_id"]["name"] for e in run.events]
    else:
        made_from = [e["id"] for e in run.events]
    return Identity(run.flow, frozenset(made_from))


@dataclass
class Observed:
    """What the system holds once it has quiesced."""

    runs: list[RunRecord]
    changes: list[PhaseChange]  # every run's phase history, from the store
    published: list[str]  # the ids of the run-events topic's records, in topic order
    ledger: dict[str, list[str]]  # run name: what its flow wrote ("start", "done")


@dataclass
class Report:
    """The differences, one list per kind; empty lists mean the schedule passed."""

    expected: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_parameters: list[str] = field(default_factory=list)
    not_succeeded: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    lifecycle_missing: list[str] = field(default_factory=list)
    lifecycle_out_of_order: list[str] = field(default_factory=list)
    lifecycle_repeated: int = 0  # allowed: the relay is at least once, under the same ids

    FAILURES = (
        "lost",
        "duplicated",
        "unexpected",
        "wrong_parameters",
        "not_succeeded",
        "ran",
        "lifecycle_missing",
        "lifecycle_out_of_order",
    )

    @property
    def passed(self) -> bool:
        return not any(getattr(self, kind) for kind in self.FAILURES)

    def lines(self) -> list[str]:
        out = [
            f"expected runs {self.expected}, lost {len(self.lost)}, duplicated "
            f"{len(self.duplicated)}, unexpected {len(self.unexpected)}, wrong parameters "
            f"{len(self.wrong_parameters)}, not succeeded {len(self.not_succeeded)}, flows not "
            f"run once {len(self.ran)}, lifecycle events missing {len(self.lifecycle_missing)}, "
            f"out of order {len(self.lifecycle_out_of_order)} (repeated on the topic, under "
            f"their ids: {self.lifecycle_repeated})"
        ]
        for kind in self.FAILURES:
            out.extend(f"  {kind.replace('_', ' ')}: {item}" for item in getattr(self, kind)[:20])
        return out


def check(expected: Iterable[Expected], observed: Observed) -> Report:
    """Compare the model's runs (plus ``nm_after``'s, which follow the ``nm_pair`` runs that
    succeeded) with what the system holds."""
    wanted = {e.identity: e for e in expected}
    for run in observed.runs:
        if run.flow == "nm_pair" and run.phase == WorkflowPhase.SUCCEEDED:
            after = Identity("nm_after", frozenset([run.name]))
            wanted[after] = Expected(after)
    report = Report(expected=len(wanted))
    made: dict[Identity, list[RunRecord]] = defaultdict(list)
    for run in observed.runs:
        made[identity(run)].append(run)
    report.lost = [f"{i} {wanted[i].parameters}" for i in wanted if i not in made]
    for ident, runs in made.items():
        names = ", ".join(r.name for r in runs)
        if ident not in wanted:
            report.unexpected.append(f"{ident}: {names}")
            continue
        if len(runs) > 1:
            report.duplicated.append(f"{ident} x{len(runs)}: {names}")
        want = wanted[ident].parameters
        for run in runs:
            got = {p: run.parameters.get(p) for p in want}
            if got != want:
                report.wrong_parameters.append(f"{run.name} {ident}: {got}, expected {want}")
    for run in observed.runs:
        if run.phase != WorkflowPhase.SUCCEEDED:
            report.not_succeeded.append(f"{run.name} {run.phase} {run.error}")
        done = observed.ledger.get(run.name, []).count("done")
        if done != 1:
            report.ran.append(f"{run.name}: its flow ran to the end {done} times")
    _lifecycle(report, observed)
    return report


def _lifecycle(report: Report, observed: Observed) -> None:
    """Every phase change is on the run-events topic, and one run's in the order made."""
    count = Counter(observed.published)
    report.lifecycle_repeated = sum(n - 1 for n in count.values())
    at: dict[str, int] = {}
    for position, event_id in enumerate(observed.published):
        at.setdefault(event_id, position)
    by_run: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for change in observed.changes:
        event_id = f"{change.project}.{change.domain}.phase-{change.id}"
        if event_id not in at:
            report.lifecycle_missing.append(f"{change.name} {change.phase} ({event_id})")
        else:
            by_run[change.name].append((change.id, at[event_id]))
    for name, pairs in by_run.items():
        positions = [p for _, p in sorted(pairs)]
        if positions != sorted(positions):
            report.lifecycle_out_of_order.append(name)


def read_ledger(folder: Path) -> dict[str, list[str]]:
    """What each run's flow wrote to the ledger (see the nemesis flows)."""
    return {path.name: path.read_text().split() for path in folder.iterdir()}

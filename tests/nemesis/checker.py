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
    changes: list[PhaseChange]  # the phase history of those runs, from the store
    published: list[str]  # the ids of the run-events topic's records, in topic order
    ledger: dict[str, list[str]]  # run name: what its flow wrote ("start", "done")
    recorded: set[str] = field(default_factory=set)  # event ids of every run's changes


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
    history_repeated: list[str] = field(default_factory=list)
    lifecycle_missing: list[str] = field(default_factory=list)
    lifecycle_out_of_order: list[str] = field(default_factory=list)
    lifecycle_phantom: list[str] = field(default_factory=list)
    lifecycle_repeated: int = 0  # allowed: the relay is at least once, under the same ids

    FAILURES = (
        "lost",
        "duplicated",
        "unexpected",
        "wrong_parameters",
        "not_succeeded",
        "ran",
        "history_repeated",
        "lifecycle_missing",
        "lifecycle_out_of_order",
        "lifecycle_phantom",
    )

    @property
    def passed(self) -> bool:
        return not any(getattr(self, kind) for kind in self.FAILURES)

    def lines(self) -> list[str]:
        counts = ", ".join(f"{k.replace('_', ' ')} {len(getattr(self, k))}" for k in self.FAILURES)
        out = [
            f"expected runs {self.expected}; {counts} (lifecycle events repeated on the "
            f"topic under their ids: {self.lifecycle_repeated})"
        ]
        for kind in self.FAILURES:
            out.extend(f"  {kind.replace('_', ' ')}: {item}" for item in getattr(self, kind)[:20])
        return out


def with_after(expected: Iterable[Expected], runs: Iterable[RunRecord]) -> list[Expected]:
    """The model's runs, plus an ``nm_after`` run for each ``nm_pair`` run that succeeded."""
    return list(expected) + [
        Expected(Identity("nm_after", frozenset([run.name])))
        for run in runs
        if run.flow == "nm_pair" and run.phase == WorkflowPhase.SUCCEEDED
    ]


def missing_runs(expected: Iterable[Expected], runs: list[RunRecord]) -> list[str]:
    """The runs the model expects that the store does not hold (yet)."""
    made = {identity(r) for r in runs}
    held: dict[str, set[str]] = defaultdict(set)
    for ident in made:
        held[ident.flow] |= ident.made_from
    return [
        str(e.identity)
        for e in with_after(expected, runs)
        if (not e.loose and e.identity not in made)
        or (e.loose and not e.identity.made_from <= held[e.identity.flow])
    ]


def check(expected: Iterable[Expected], observed: Observed) -> Report:
    """Compare the model's runs (plus ``nm_after``'s, which follow the ``nm_pair`` runs that
    succeeded) with what the system holds."""
    wanted = with_after(expected, observed.runs)
    report = Report(expected=len(wanted))
    made: dict[Identity, list[RunRecord]] = defaultdict(list)
    for run in observed.runs:
        made[identity(run)].append(run)
    for loose in (e for e in wanted if e.loose):
        _split(report, loose, made)
    exact = {e.identity: e for e in wanted if not e.loose}
    report.lost += [f"{i} {e.parameters}" for i, e in exact.items() if i not in made]
    for ident, runs in made.items():
        names = ", ".join(r.name for r in runs)
        if ident not in exact:
            report.unexpected.append(f"{ident}: {names}")
            continue
        if len(runs) > 1:
            report.duplicated.append(f"{ident} x{len(runs)}: {names}")
        want = exact[ident].parameters
        report.wrong_parameters += [
            f"{r.name} {ident}: {r.parameters}, expected {want}"
            for r in runs
            if r.parameters != want
        ]
    for run in observed.runs:
        if run.phase != WorkflowPhase.SUCCEEDED:
            report.not_succeeded.append(f"{run.name} {run.phase} {run.error}")
        done = observed.ledger.get(run.name, []).count("done")
        # A run killed after its flow ended and before it reported is rightly run again.
        if not 1 <= done <= max(run.attempts, 1):
            report.ran.append(
                f"{run.name}: its flow ran to the end {done} times in {run.attempts} attempts"
            )
    _lifecycle(report, observed)
    return report


def _split(report: Report, loose: Expected, made: dict[Identity, list[RunRecord]]) -> None:
    """Match the runs that share a loose identity's ids out: each id in exactly one run."""
    ids, flow = loose.identity.made_from, loose.identity.flow
    parts = [i for i in list(made) if i.flow == flow and i.made_from <= ids]
    runs = [r for i in parts for r in made.pop(i)]
    counted = Counter(e for r in runs for e in identity(r).made_from)
    if set(counted) != ids:
        report.lost.append(f"{loose.identity} (split allowed): no run for {ids - set(counted)}")
    if any(n > 1 for n in counted.values()):
        report.duplicated.append(f"{loose.identity} (split allowed): {[r.name for r in runs]}")
    report.wrong_parameters += [
        f"{r.name}: {r.parameters}, expected k={loose.parameters['k']}"
        for r in runs
        if r.parameters.get("k") != loose.parameters["k"]
    ]


def _lifecycle(report: Report, observed: Observed) -> None:
    """Each run's history moves through a phase once; every phase change is on the
    run-events topic, one run's in the order made; nothing else is there."""
    count = Counter(observed.published)
    report.lifecycle_repeated = sum(n - 1 for n in count.values())
    report.lifecycle_phantom = sorted(set(count) - observed.recorded) if observed.recorded else []
    at: dict[str, int] = {}
    for position, event_id in enumerate(observed.published):
        at.setdefault(event_id, position)
    by_run: dict[str, list[tuple[int, int]]] = defaultdict(list)
    phases: dict[tuple[str, int | None], Counter[str]] = defaultdict(Counter)
    for change in observed.changes:
        phases[(change.name, change.attempt)][change.phase] += 1
        event_id = f"{change.project}.{change.domain}.phase-{change.id}"
        if event_id not in at:
            report.lifecycle_missing.append(f"{change.name} {change.phase} ({event_id})")
        else:
            by_run[change.name].append((change.id, at[event_id]))
    for (name, attempt), seen in phases.items():
        twice = sorted(phase for phase, n in seen.items() if n > 1)
        if twice:
            where = "its run" if attempt is None else f"attempt {attempt}"
            report.history_repeated.append(f"{name}: {where} entered {twice} more than once")
    for name, pairs in by_run.items():
        positions = [p for _, p in sorted(pairs)]
        if positions != sorted(positions):
            report.lifecycle_out_of_order.append(name)


def read_ledger(folder: Path) -> dict[str, list[str]]:
    """What each run's flow wrote to the ledger (see the nemesis flows)."""
    return {path.name: path.read_text().split() for path in folder.iterdir()}

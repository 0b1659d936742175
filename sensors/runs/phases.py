"""Run phases, as in Flyte: a workflow's phase, an attempt's phase, and the legal moves.

Moving to the phase a run is already in is allowed and changes nothing, so a
repeated update (a redelivered message, a retried write) is harmless.
"""

from __future__ import annotations

from enum import StrEnum

from triggers.errors import IllegalTransitionError

__all__ = [
    "TERMINAL_ATTEMPT_PHASES",
    "TERMINAL_PHASES",
    "AttemptPhase",
    "ErrorKind",
    "WorkflowPhase",
    "can_move",
    "check_transition",
    "is_terminal",
]


class WorkflowPhase(StrEnum):
    """The phase of a run (Flyte's WorkflowExecution.Phase)."""

    UNDEFINED = "UNDEFINED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDING = "SUCCEEDING"
    SUCCEEDED = "SUCCEEDED"
    FAILING = "FAILING"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    TIMED_OUT = "TIMED_OUT"
    ABORTING = "ABORTING"


class AttemptPhase(StrEnum):
    """The phase of one attempt of a run (Flyte's TaskExecution.Phase)."""

    UNDEFINED = "UNDEFINED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    ABORTED = "ABORTED"
    FAILED = "FAILED"
    INITIALIZING = "INITIALIZING"
    WAITING_FOR_RESOURCES = "WAITING_FOR_RESOURCES"
    RETRYABLE_FAILED = "RETRYABLE_FAILED"


class ErrorKind(StrEnum):
    """Whose fault a failure is: the flow's code (USER) or the platform (SYSTEM)."""

    USER = "USER"
    SYSTEM = "SYSTEM"


P = WorkflowPhase
TERMINAL_PHASES = frozenset({P.SUCCEEDED, P.FAILED, P.ABORTED, P.TIMED_OUT})

_NEXT: dict[WorkflowPhase, frozenset[WorkflowPhase]] = {
    P.UNDEFINED: frozenset({P.QUEUED}),
    P.QUEUED: frozenset({P.RUNNING, P.FAILED, P.ABORTING, P.ABORTED, P.TIMED_OUT}),
    P.RUNNING: frozenset(
        {P.SUCCEEDING, P.SUCCEEDED, P.FAILING, P.FAILED, P.ABORTING, P.ABORTED, P.TIMED_OUT}
    ),
    P.SUCCEEDING: frozenset({P.SUCCEEDED, P.FAILED, P.ABORTING}),
    P.FAILING: frozenset({P.FAILED, P.ABORTING}),
    P.ABORTING: frozenset({P.ABORTED, P.FAILED}),
    **{phase: frozenset() for phase in TERMINAL_PHASES},
}


def is_terminal(phase: WorkflowPhase) -> bool:
    """True for a final phase: a run there never moves again."""
    return phase in TERMINAL_PHASES


def allowed_next(phase: WorkflowPhase) -> frozenset[WorkflowPhase]:
    """The phases a run in ``phase`` may move to (besides staying where it is)."""
    return _NEXT[phase]


def can_move(current: WorkflowPhase, new: WorkflowPhase) -> bool:
    """Whether a run may move from ``current`` to ``new``."""
    return new == current or new in _NEXT[current]


def check_transition(current: WorkflowPhase, new: WorkflowPhase) -> None:
    """Raise IllegalTransitionError unless a run may move from ``current`` to ``new``."""
    if can_move(current, new):
        return
    allowed = ", ".join(sorted(_NEXT[current])) or "nothing (it is final)"
    raise IllegalTransitionError(
        f"a run cannot go from {current} to {new}; from {current} it can go to {allowed}."
    )


A = AttemptPhase
TERMINAL_ATTEMPT_PHASES = frozenset({A.SUCCEEDED, A.FAILED, A.ABORTED, A.RETRYABLE_FAILED})

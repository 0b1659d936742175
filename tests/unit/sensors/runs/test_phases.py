"""Run phases: the legal moves, and that nothing leaves a final phase."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.runs.phases import (
    TERMINAL_PHASES,
    WorkflowPhase,
    allowed_next,
    check_transition,
    is_terminal,
)
from triggers.errors import IllegalTransitionError

phases = st.sampled_from(list(WorkflowPhase))


@given(st.lists(phases, max_size=30))
def test_accepted_moves_never_leave_a_final_phase(moves: list[WorkflowPhase]) -> None:
    current = WorkflowPhase.UNDEFINED
    for target in moves:
        try:
            check_transition(current, target)
        except IllegalTransitionError:
            continue
        if is_terminal(current):
            assert target == current
        current = target


@pytest.mark.parametrize("start", list(WorkflowPhase))
def test_every_phase_can_reach_a_final_phase(start: WorkflowPhase) -> None:
    frontier, seen = [start], {start}
    while frontier:
        phase = frontier.pop()
        for nxt in allowed_next(phase) - seen:
            seen.add(nxt)
            frontier.append(nxt)
    assert seen & TERMINAL_PHASES


@given(phases)
def test_moving_to_the_same_phase_is_a_harmless_repeat(phase: WorkflowPhase) -> None:
    check_transition(phase, phase)


def test_an_illegal_move_names_both_phases_and_the_allowed_ones() -> None:
    with pytest.raises(IllegalTransitionError) as caught:
        check_transition(WorkflowPhase.QUEUED, WorkflowPhase.SUCCEEDED)
    message = str(caught.value)
    assert "QUEUED to SUCCEEDED" in message
    assert "RUNNING" in message and "ABORTED" in message


def test_a_final_phase_says_it_is_final() -> None:
    with pytest.raises(IllegalTransitionError, match="it is final"):
        check_transition(WorkflowPhase.SUCCEEDED, WorkflowPhase.RUNNING)

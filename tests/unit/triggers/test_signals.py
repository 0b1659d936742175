"""wait_for_event's checks that need no store."""

from __future__ import annotations

import pytest

from triggers import ConfigurationError, wait_for_event
from triggers.current import current


def test_waiting_outside_a_run_says_how_to_start_one() -> None:
    current._bind(None)
    with pytest.raises(ConfigurationError, match="works inside a run the engine started"):
        wait_for_event("approval", type=bool)


@pytest.mark.parametrize("kind", [list, dict, bytes])
def test_a_signal_type_other_than_bool_int_float_str_is_refused(kind: type) -> None:
    with pytest.raises(TypeError, match="must be bool, int, float or str"):
        wait_for_event("approval", type=kind)


async def test_the_sync_form_works_inside_an_event_loop_too() -> None:
    current._bind(None)
    with pytest.raises(ConfigurationError):
        wait_for_event("approval")  # called synchronously from a coroutine
    with pytest.raises(ConfigurationError):
        await wait_for_event.aio("approval")

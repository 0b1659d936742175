"""trigger_on_finish cycles are refused at deploy, with the cycle named."""

from __future__ import annotations

import pytest

from sensors.runs.deploy import check_finish_cycles
from triggers import DeclarationError, trigger, trigger_on_finish
from triggers.declarations import flow_spec


def test_a_chain_is_fine_and_a_cycle_is_named() -> None:
    @trigger(event="start")
    def a() -> None: ...

    @trigger_on_finish(flow="a")
    def b() -> None: ...

    @trigger_on_finish(flow="b")
    def c() -> None: ...

    check_finish_cycles([flow_spec(f) for f in (a, b, c)])

    @trigger_on_finish(flow="c")
    def a() -> None: ...

    with pytest.raises(DeclarationError, match=r"cycle: a -> b -> c -> a"):
        check_finish_cycles([flow_spec(f) for f in (a, b, c)])


def test_a_flow_that_waits_for_itself_is_a_cycle() -> None:
    @trigger_on_finish(flow="again")
    def again() -> None: ...

    with pytest.raises(DeclarationError, match=r"cycle: again -> again"):
        check_finish_cycles([flow_spec(again)])

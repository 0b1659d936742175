"""The publish command dev's banner suggests: one that starts a run of a loaded flow."""

from __future__ import annotations

from datetime import date

from sensors.cli.banner import publish_hint
from triggers import trigger, trigger_on_finish
from triggers.declarations import flow_spec
from triggers.spec import FlowSpec


def _spec(func: object) -> FlowSpec:
    return flow_spec(func)  # type: ignore[arg-type]


def test_a_flow_read_by_name_gets_its_defaults_as_pairs() -> None:
    @trigger(event="data_updated")
    def refresh(table: str = "sales", rows: int = 0) -> None: ...

    hint = publish_hint([_spec(refresh)])
    assert hint == "tripwire publish data_updated -p table=sales -p rows=0"


def test_a_mapped_json_path_becomes_a_nested_payload() -> None:
    @trigger(event={"name": "cfg_changed", "parameters": {"days": "$.cfg.days"}})
    def window(days: int = 3) -> None: ...

    assert publish_hint([_spec(window)]) == (
        """tripwire publish cfg_changed --payload '{"cfg": {"days": 3}}'"""
    )


def test_a_required_date_gets_an_example_of_its_type() -> None:
    @trigger(event="day_closed")
    def load(day: date) -> None: ...

    assert publish_hint([_spec(load)]) == (
        f"tripwire publish day_closed -p day={date.today().isoformat()}"
    )


def test_events_that_would_start_no_run_alone_are_never_suggested() -> None:
    @trigger(event="orders.*")
    def wildcard() -> None: ...

    @trigger(event={"name": "payment", "filters": ["$.amount >= 100"]})
    def filtered(amount: int = 0) -> None: ...

    @trigger(events=["a", "b"])
    def both() -> None: ...

    @trigger_on_finish(flow="wildcard")
    def after() -> None: ...

    @trigger(event="hook_called", target="https://example.com/hook")
    def remote() -> None: ...

    specs = [_spec(f) for f in (wildcard, filtered, both, after, remote)]
    assert publish_hint(specs) is None

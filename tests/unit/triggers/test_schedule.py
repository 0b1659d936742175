"""@schedule as declared: validated at decoration, stackable with @trigger."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from triggers import DeclarationError, schedule, trigger
from triggers.declarations import flow_spec
from triggers.spec import FlowSpec, ScheduleSpec


def test_a_cron_schedule_stacks_with_an_event_trigger() -> None:
    @trigger(event="data_updated")
    @schedule(cron="0 0 * * *", tz="Europe/Berlin", catchup="all", max_catchup=5)
    def refresh(day: str = "today") -> None: ...

    spec = flow_spec(refresh)
    assert [t.name for t in spec.triggers] == ["trigger", "schedule"]
    sched = spec.triggers[1].schedule
    assert sched is not None
    assert (sched.cron, sched.tz, sched.catchup, sched.max_catchup) == (
        "0 0 * * *",
        "Europe/Berlin",
        "all",
        5,
    )
    assert spec.triggers[1].dependencies == ()
    assert refresh() is None  # still plain Python


@pytest.mark.parametrize("alias", ["@hourly", "@daily", "@weekly"])
def test_cron_aliases_are_accepted(alias: str) -> None:
    @schedule(cron=alias)
    def job() -> None: ...

    assert flow_spec(job).triggers[0].schedule.cron == alias  # type: ignore[union-attr]


def test_a_rate_is_a_duration() -> None:
    @schedule(rate="5m", name="often")
    def job() -> None: ...

    [trig] = flow_spec(job).triggers
    assert trig.name == "often"
    assert trig.schedule is not None and trig.schedule.rate == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "not a valid cron expression"),
        ({"cron": "0 0 * *"}, "has 4 fields; write five"),
        ({"cron": "* * * * * *"}, "has 6 fields"),
        ({}, "exactly one of cron"),
        ({"cron": "@daily", "rate": "1h"}, "exactly one of cron"),
        ({"rate": "soon"}, "rate='soon' is not a duration"),
        ({"rate": 0.5}, "smallest rate, one second"),
        ({"cron": "@daily", "tz": "Mars/Base"}, "not an IANA time zone"),
        ({"cron": "@daily", "catchup": "some"}, "must be one of 'latest', 'all', 'none'"),
        ({"cron": "@daily", "parameters": {"day": "$.date"}}, "must map to '$schedule.time'"),
    ],
)
def test_a_bad_schedule_is_refused_at_decoration(kwargs: dict, message: str) -> None:
    with pytest.raises(DeclarationError, match=message.replace("(", r"\(").replace("$", r"\$")):

        @schedule(**kwargs)
        def job() -> None: ...


def test_a_required_parameter_without_a_source_is_refused() -> None:
    with pytest.raises(DeclarationError, match=r"parameters \['table'\] have no default"):

        @schedule(cron="@daily")
        def job(table: str) -> None: ...


def test_the_tick_fills_scheduled_at_and_mapped_parameters() -> None:
    @schedule(cron="@daily", parameters={"day": "$schedule.time"})
    def job(day: str, scheduled_at: datetime) -> None: ...

    assert flow_spec(job).triggers[0].schedule.parameters == {"day": "$schedule.time"}  # type: ignore[union-attr]


def test_a_mapped_parameter_must_exist() -> None:
    with pytest.raises(DeclarationError, match="'dya' is not a parameter"):

        @schedule(cron="@daily", parameters={"dya": "$schedule.time"})
        def job(day: str = "") -> None: ...


def test_a_bad_cron_in_a_loaded_spec_is_refused_too() -> None:
    # Deploys load specs from JSON: the same validation applies.
    @schedule(cron="@daily")
    def job() -> None: ...

    data = flow_spec(job).model_dump(mode="json")
    data["triggers"][0]["schedule"]["cron"] = "0 25 * * *"
    with pytest.raises(ValueError, match="not a valid cron expression"):
        FlowSpec.model_validate(data)
    assert ScheduleSpec(cron="0 0 * * *").describe() == "cron 0 0 * * * (UTC)"

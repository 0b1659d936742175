"""The runs list's query: its filters as the URL writes them, and its keyset cursor."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.queries.runs import MAX_PAGE, PAGE_SIZE, RunKey, RunQuery, parse_run_query
from sensors.runs.phases import WorkflowPhase

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

OUT_OF_RANGE = base64.urlsafe_b64encode(b"0001-01-01T00:00:00+01:00 x").decode().rstrip("=")


def parse(query: str) -> RunQuery:
    return parse_run_query(parse_qsl(query, keep_blank_values=True), NOW)


def test_no_filter_is_the_newest_page_of_fifty() -> None:
    query = parse_run_query([], NOW)
    assert (query.flows, query.phases, query.after, query.before) == ((), (), None, None)
    assert query.limit == PAGE_SIZE and query.older is None and query.newer is None
    assert query.link() == "/runs"


def test_flows_and_phases_repeat_or_list_several_with_commas() -> None:
    query = parse_run_query(
        [("flow", "a,b"), ("flow", "c"), ("phase", "running"), ("phase", "Failed,RUNNING")], NOW
    )
    assert query.flows == ("a", "b", "c")
    assert query.phases == (WorkflowPhase.RUNNING, WorkflowPhase.FAILED)


def test_empty_fields_of_the_form_count_as_not_given() -> None:
    query = parse_run_query([("flow", ""), ("after", " "), ("limit", ""), ("before", "")], NOW)
    assert query == parse_run_query([], NOW)
    assert query.link() == "/runs"


def test_times_are_durations_back_from_now_or_iso_times_compared_in_utc() -> None:
    query = parse_run_query([("after", "24h"), ("before", "2026-11-23T09:30:00+02:00")], NOW)
    assert query.after == NOW - timedelta(hours=24)
    assert query.before == datetime(2026, 11, 23, 7, 30, tzinfo=UTC)
    assert query.before.tzinfo == UTC  # SQLite compares the UTC text
    naive = parse_run_query([("after", "2026-11-23T06:00:00")], NOW)
    assert naive.after == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "named", "hint"),
    [
        ("phase=RUNING", "phase='RUNING'", "did you mean 'RUNNING'?"),
        ("phase=done", "phase='done'", "the phases are QUEUED, RUNNING"),
        ("after=yesterday", "after='yesterday'", "duration back from now (90m, 24h, 7d)"),
        ("before=2026-13-01", "before='2026-13-01'", "ISO 8601 time (2026-11-23T08:00:00Z)"),
        ("after=1h&after=2h", "after is given 2 times (1h, 2h)", "give it once"),
        ("limit=0", "limit='0'", f"from 1 to {MAX_PAGE}"),
        (f"limit={MAX_PAGE + 1}", f"limit='{MAX_PAGE + 1}'", f"from 1 to {MAX_PAGE}"),
        ("limit=ten", "limit='ten'", f"the default is {PAGE_SIZE}"),
        ("phases=RUNNING", "no filter 'phases'", "did you mean 'phase'?"),
        ("older=%21%21", "older='!!' is not a cursor", "follow the list's own newer and older"),
        # Times beyond what a datetime holds, once moved to UTC or back from now
        ("after=99999999d", "after='99999999d' is not a time", "2026-11-23T08:00:00Z"),
        ("after=0001-01-01T00:00:00%2B01:00", "after='0001-01-01T00:00:00+01:00'", "is not a time"),
        ("before=9999-12-31T23:59:59-01:00", "before='9999-12-31T23:59:59-01:00'", "is not a time"),
        (f"older={OUT_OF_RANGE}", "is not a cursor", "follow the list's own newer and older"),
    ],
)
def test_a_bad_filter_is_named_with_the_forms_the_list_takes(
    query: str, named: str, hint: str
) -> None:
    with pytest.raises(ValueError) as raised:
        parse(query)
    assert named in str(raised.value) and hint in str(raised.value)


def test_a_page_is_older_or_newer_than_a_cursor_not_both() -> None:
    token = RunKey(NOW, "a").token()
    with pytest.raises(ValueError, match="give older or newer, not both"):
        parse(f"older={token}&newer={token}")


def test_links_keep_the_filters_as_written_and_add_the_cursor() -> None:
    query = parse(
        "flow=etl&phase=failed,running&after=1h&limit=20&older=" + RunKey(NOW, "x").token()
    )
    link = query.link(newer=RunKey(NOW, "etl-1"))
    params = parse_qsl(urlsplit(link).query)
    # The cursor the page came with is not carried on: the link has its own.
    assert params[:-1] == [
        ("flow", "etl"),
        ("phase", "failed,running"),
        ("after", "1h"),
        ("limit", "20"),
    ]
    assert params[-1][0] == "newer" and RunKey.from_token(params[-1][1], "newer").name == "etl-1"
    assert parse(urlsplit(link).query).after == NOW - timedelta(hours=1)  # still relative


@given(
    at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
    ),
    name=st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
)
def test_a_cursor_gives_back_the_run_key_it_was_made_of(at: datetime, name: str) -> None:
    back = RunKey.from_token(RunKey(at, name).token(), "older")
    assert back.created_at == at and back.created_at.tzinfo is not None
    assert back.name == name

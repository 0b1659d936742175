"""Event sources in the run store, on SQLite and PostgreSQL: deploys, status, leases."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sensors.runs.store import RunStore
from sensors.sources.store import (
    SourceStatus,
    deploy_sources,
    deployed_sources,
    list_source_status,
    release_lease,
    report_status,
    sources_mark,
    take_lease,
)
from triggers.sources import EventSource

pytestmark = pytest.mark.integration

SCOPE = {"project": "p", "domain": "d"}


def spec(name: str = "orders", **fields: str) -> EventSource:
    base = {"name": name, "url": "redis://h", "stream": "s", "event": "order_placed"}
    return EventSource.model_validate({**base, **fields})


async def test_a_deploy_keeps_revisions_like_flows(run_store: RunStore) -> None:
    first = await deploy_sources(run_store, [spec(), spec("audit")], **SCOPE)
    assert (first.created, first.changed) == (["orders", "audit"], [])
    mark = await sources_mark(run_store, **SCOPE)
    again = await deploy_sources(run_store, [spec()], **SCOPE)
    assert again.unchanged == ["orders"]
    assert await sources_mark(run_store, **SCOPE) == mark  # nothing changed
    changed = await deploy_sources(run_store, [spec(event="order_paid")], **SCOPE, prune=True)
    assert (changed.changed, changed.retired) == (["orders"], ["audit"])
    assert [(s.event, rev) for s, rev in await deployed_sources(run_store, **SCOPE)] == [
        ("order_paid", 2)
    ]
    assert await sources_mark(run_store, **SCOPE) != mark
    assert await deployed_sources(run_store, project="p", domain="other") == []


async def test_status_reports_replace_their_own_row(run_store: RunStore) -> None:
    now = datetime.now(UTC)
    report = SourceStatus("orders", "host:1", 1, "connected", now, 5, 4, 1, 0, None, None, now)
    await report_status(run_store, "p", "d", [report])
    await report_status(
        run_store, "p", "d", [replace(report, messages_in=9, last_error="boom", last_error_at=now)]
    )
    await report_status(run_store, "p", "d", [replace(report, instance="host:2")])
    found = await list_source_status(run_store, **SCOPE)
    assert [(r.instance, r.messages_in, r.last_error) for r in found] == [
        ("host:1", 9, "boom"),
        ("host:2", 5, None),
    ]


async def test_one_process_holds_a_lease_until_it_lapses_or_is_released(
    run_store: RunStore,
) -> None:
    # (a lease of 2 s, long against the three calls that must fit in it)
    assert await take_lease(run_store, "p", "d", "mqtt", "a", ttl=2)
    assert not await take_lease(run_store, "p", "d", "mqtt", "b", ttl=2)
    assert await take_lease(run_store, "p", "d", "mqtt", "a", ttl=2)  # renewed
    await asyncio.sleep(2.2)  # the lease lapses
    assert await take_lease(run_store, "p", "d", "mqtt", "b", ttl=5)  # lapsed: b takes it
    assert not await take_lease(run_store, "p", "d", "mqtt", "a", ttl=5)
    await release_lease(run_store, "p", "d", "mqtt", "b")
    assert await take_lease(run_store, "p", "d", "mqtt", "a", ttl=5)

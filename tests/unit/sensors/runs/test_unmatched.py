"""How a run's mappings that matched nothing read back from its trigger info."""

from __future__ import annotations

from sensors.runs.unmatched import kept_defaults


def test_each_kept_default_reads_as_one_line_with_json_values() -> None:
    info = {
        "kind": "threshold",
        "unmatched": [
            {
                "parameter": "window",
                "default": 3,
                "source": "$.cfg.dayz",
                "event": "e",
                "event_id": "1",
            },
            {
                "parameter": "full",
                "default": True,
                "source": "$event.time",
                "event": "e",
                "event_id": "1",
            },
            {"parameter": "day", "default": None, "source": "dya", "event": "e", "event_id": "2"},
        ],
    }
    assert [u.describe() for u in kept_defaults(info)] == [
        "window: default 3, $.cfg.dayz matched nothing in event e (id 1)",
        "full: default true, $event.time matched nothing in event e (id 1)",
        "day: default null, dya matched nothing in event e (id 2)",
    ]


def test_a_run_without_unmatched_mappings_kept_no_defaults() -> None:
    assert kept_defaults(None) == [] and kept_defaults({"kind": "threshold"}) == []

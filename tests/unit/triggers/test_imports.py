"""The SDK is light to import: a run, a publisher or the CLI pays only for what it uses
(issue: runs that start in milliseconds). `bench/startup.py` measures the time; this checks
what an import brings in, which does not depend on the machine."""

from __future__ import annotations

from tests.fixtures.imports import loaded_by

HEAVY = ["pydantic_settings", "httpx", "aiokafka", "sqlalchemy", "croniter", "yaml", "rich"]


def _loaded_after(code: str) -> object:
    """The HEAVY modules that ``code`` loads, in a fresh interpreter."""
    return loaded_by(code, HEAVY)["loaded"]


def test_importing_the_sdk_loads_no_settings_kafka_http_or_database_library() -> None:
    assert _loaded_after("import triggers") == []


def test_a_publisher_loads_no_jsonpath_parser_until_an_expression_is_declared() -> None:
    assert loaded_by("import triggers", ["jsonpath_ng"])["loaded"] == []


def test_a_flow_module_that_declares_triggers_loads_none_of_them_either() -> None:
    flow = (
        "from triggers import trigger, current\n"
        "@trigger(events=['a', 'b'], correlate_by='$.day', within='1h')\n"
        "def f(day: str = '') -> None: ...\n"
    )
    assert _loaded_after(flow) == []


def test_settings_are_still_importable_from_the_package_and_load_on_first_use() -> None:
    code = "import triggers\nfrom triggers import Settings\nassert Settings().project"
    assert _loaded_after(code) == ["pydantic_settings"]  # YAML only for a cloud_events file

"""The CLI starts light: `tripwire --help` and `tripwire publish` load only what they use
(issue 22: a light CLI). `bench/startup.py` measures the time; this checks what a command
brings in, which does not depend on the machine."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.imports import loaded_by

HEAVY = [
    "sqlalchemy",
    "fastapi",
    "uvicorn",
    "aiokafka",
    "httpx",
    "pydantic_settings",
    "kubernetes_asyncio",
]


def _loaded_by(*argv: str, home: Path) -> tuple[object, object]:
    """Run ``tripwire ARGV`` in a fresh interpreter: its exit code, and the HEAVY modules
    it loaded."""
    found = loaded_by(
        f"sys.argv = ['tripwire', *{list(argv)!r}]\nfrom sensors.cli import main\nmain()",
        HEAVY,
        home=home,
    )
    return found["code"], found["loaded"]


def test_tripwire_help_builds_every_command_without_the_engine_settings_or_any_client(
    tmp_path: Path,
) -> None:
    # When: `tripwire --help`, which builds the whole app (every group and command)
    code, loaded = _loaded_by("--help", home=tmp_path)

    # Then: none of the store, the API, Kafka, HTTP, settings or cluster libraries loaded
    assert code == 0
    assert loaded == []


def test_a_group_help_loads_none_of_them_either(tmp_path: Path) -> None:
    for group in ("runs", "sensors", "events", "sources", "projects", "api"):
        assert _loaded_by(group, "--help", home=tmp_path) == (0, []), group


def test_publish_help_loads_none_of_them(tmp_path: Path) -> None:
    assert _loaded_by("publish", "--help", home=tmp_path) == (0, [])


def test_publishing_loads_neither_the_run_store_nor_the_web_server(tmp_path: Path) -> None:
    # Given: no broker configured, so the command runs up to the send and stops there
    code, loaded = _loaded_by("publish", "data_updated", "-p", "rows=42", home=tmp_path)

    # Then: it failed for want of a broker (exit 1, not a usage error), with no store or API
    assert code == 1
    assert not {"sqlalchemy", "fastapi", "uvicorn", "kubernetes_asyncio"} & set(loaded)

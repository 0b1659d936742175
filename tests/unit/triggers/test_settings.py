"""Settings come from TRIPWIRE_* variables, and from a running `tripwire dev`'s dev.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from triggers.errors import ConfigurationError
from triggers.settings import Settings, WebhookSource, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TRIPWIRE_KAFKA_BOOTSTRAP", "TRIPWIRE_DATABASE_URL", "TRIPWIRE_API_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))


def write_dev(home: Path, **info: object) -> None:
    (home / "dev.json").write_text(json.dumps(info))


def test_settings_read_tripwire_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPWIRE_PROJECT", "analytics")
    monkeypatch.setenv("TRIPWIRE_PUBLISH_TIMEOUT", "2.5")
    settings = Settings()
    assert settings.project == "analytics" and settings.publish_timeout == 2.5


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPWIRE_PUBLISH_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="publish_timeout"):
        Settings()


def test_a_running_dev_engine_is_found_through_dev_json(tmp_path: Path) -> None:
    write_dev(tmp_path, kafka_bootstrap="127.0.0.1:4321", database_url="sqlite+aiosqlite:///x.db")
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:4321"
    assert settings.store_url == "sqlite+aiosqlite:///x.db"


def test_the_environment_wins_over_dev_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dev(tmp_path, kafka_bootstrap="127.0.0.1:4321", database_url="sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", "kafka:9092")
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.store_url.endswith(str((tmp_path / "tripwire.db").resolve()))


def test_an_unreadable_dev_json_says_to_delete_it(tmp_path: Path) -> None:
    (tmp_path / "dev.json").write_text("{broken")
    with pytest.raises(ConfigurationError, match="delete it"):
        Settings()


def test_no_broker_configured_says_how_to_configure_one() -> None:
    with pytest.raises(ConfigurationError, match=r"TRIPWIRE_KAFKA_BOOTSTRAP.*tripwire dev"):
        Settings().require_bootstrap()


def test_the_store_defaults_to_sqlite_under_home(tmp_path: Path) -> None:
    assert Settings().store_url == f"sqlite+aiosqlite:///{(tmp_path / 'tripwire.db').resolve()}"


def test_settings_built_before_are_reused_only_while_their_sources_are_unchanged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given settings read once
    first = get_settings()
    assert first.kafka_bootstrap is None
    # When a running dev engine writes its dev.json, then a variable changes
    write_dev(tmp_path, kafka_bootstrap="127.0.0.1:1")
    from_dev = get_settings()
    monkeypatch.setenv("TRIPWIRE_PROJECT", "analytics")
    changed = get_settings()
    # Then each read sees what changed, as a fresh Settings() would
    assert from_dev.kafka_bootstrap == "127.0.0.1:1"
    assert (changed.project, changed.kafka_bootstrap) == ("analytics", "127.0.0.1:1")
    assert changed == Settings()


def test_settings_reused_are_a_copy_that_the_caller_may_change() -> None:
    settings = get_settings()
    settings.project = "mine"
    settings.webhook_sources["x"] = WebhookSource(secret=SecretStr("s"))
    assert get_settings() == Settings()


def test_libpq_sslmode_in_a_postgresql_url_is_what_asyncpg_calls_ssl() -> None:
    url = "postgresql+asyncpg://tw:p%40ss@db.example.com:5432/tw?sslmode=verify-full"
    assert Settings(database_url=url).store_url == (
        "postgresql+asyncpg://tw:p%40ss@db.example.com:5432/tw?ssl=verify-full"
    )
    plain = "postgresql+asyncpg://tw@db/tw?ssl=require"
    assert Settings(database_url=plain).store_url == plain


@pytest.mark.parametrize(
    ("parameter", "variable"),
    [("sslrootcert", "PGSSLROOTCERT"), ("sslcert", "PGSSLCERT"), ("sslkey", "PGSSLKEY")],
)
def test_a_certificate_file_in_a_postgresql_url_says_which_variable_takes_it(
    parameter: str, variable: str
) -> None:
    url = f"postgresql+asyncpg://tw@db/tw?sslmode=verify-full&{parameter}=/etc/pg/file.pem"
    with pytest.raises(ConfigurationError, match=f"{parameter}=.*environment variable {variable}"):
        Settings(database_url=url)

"""Every CLI error is one line, `error: <what happened>; <what to do>`: exit 2 for a usage
error, 1 for a failure (issue 30 item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from sensors.cli import app
from sensors.cli.base import OneLineErrors, VerboseOption, described, fail
from triggers.errors import RunNotFoundError


def tripwire(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="tripwire")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TRIPWIRE_DATABASE_URL", "TRIPWIRE_PROJECT", "TRIPWIRE_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_missing_argument_is_one_line_with_the_usage_and_exit_2() -> None:
    done = tripwire("runs", "create")
    assert done.exit_code == 2
    assert done.stderr == (
        "error: missing argument 'flow'; usage: tripwire runs create [OPTIONS] {flow} "
        "(see --help)\n"
    )


def test_an_unknown_command_suggests_the_one_meant() -> None:
    done = tripwire("runs", "lst")
    assert done.exit_code == 2
    assert done.stderr == (
        "error: no such command 'lst'; did you mean 'list'? (see tripwire runs --help)\n"
    )


def test_an_unknown_option_suggests_the_one_meant() -> None:
    done = tripwire("runs", "list", "--prject", "x")
    assert done.exit_code == 2
    assert done.stderr == (
        "error: no such option: --prject; did you mean --project? (see tripwire runs list --help)\n"
    )


def test_a_bad_option_value_names_the_option() -> None:
    done = tripwire("runs", "list", "--limit", "many")
    assert done.exit_code == 2
    assert done.stderr.startswith("error: invalid value for '--limit': ")
    assert done.stderr.endswith("; usage: tripwire runs list [OPTIONS] (see --help)\n")


def test_a_bad_value_a_command_refuses_says_what_to_write_instead() -> None:
    done = tripwire("runs", "list", "--phase", "DONE")
    assert done.exit_code == 2
    assert done.stderr.startswith(
        "error: invalid value for --phase: unknown phase 'DONE'; use one of UNDEFINED, QUEUED"
    )
    assert done.stderr.count("\n") == 1


def test_a_tripwire_error_is_one_line_and_exit_1() -> None:
    done = tripwire("runs", "get", "no-such-run")
    assert done.exit_code == 1
    assert done.stderr.startswith("error: no run named 'no-such-run'")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_help_and_a_group_without_a_command_still_print_the_help() -> None:
    helped = tripwire("runs", "create", "--help")
    assert helped.exit_code == 0 and "Usage: tripwire runs create" in helped.stdout
    bare = tripwire("runs")
    assert bare.exit_code == 2 and "Usage: tripwire runs" in bare.stdout + bare.stderr
    assert "error:" not in bare.stderr


def test_the_root_offers_shell_completion() -> None:
    assert "--install-completion" in tripwire("--help").stdout


# A crash (a bug) through the same root command, on an app of two commands that crash.
crashing = typer.Typer(cls=OneLineErrors)


@crashing.command()
def chatty(verbose: VerboseOption = False) -> None:
    raise ValueError("ValueError: the index\nis gone")


@crashing.command()
def quiet() -> None:
    raise RunNotFoundError("no run named 'x'; see `tripwire runs list`")


@crashing.command()
def plain() -> None:
    raise KeyError("x")


def test_a_crash_is_one_line_that_names_its_type_once_and_offers_verbose() -> None:
    done = CliRunner().invoke(crashing, ["chatty"])
    assert done.exit_code == 1
    assert done.stderr == (
        "error: internal error: ValueError: the index is gone; please report it "
        "(--verbose shows the traceback)\n"
    )


def test_a_crash_under_verbose_shows_the_traceback_then_the_line() -> None:
    done = CliRunner().invoke(crashing, ["chatty", "--verbose"])
    assert done.exit_code == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert done.stderr.endswith(
        "error: internal error: ValueError: the index is gone; please report it with the "
        "traceback above\n"
    )


def test_a_crash_of_a_command_without_verbose_keeps_its_traceback() -> None:
    done = CliRunner().invoke(crashing, ["plain"])
    assert done.exit_code == 1
    assert "Traceback (most recent call last):" in done.stderr
    assert done.stderr.endswith(
        "error: internal error: KeyError: 'x'; please report it with the traceback above\n"
    )


def test_a_tripwire_error_raised_outside_run_sync_is_one_line_too() -> None:
    done = CliRunner().invoke(crashing, ["quiet"])
    assert (done.exit_code, done.stderr) == (
        1,
        "error: no run named 'x'; see `tripwire runs list`\n",
    )


def test_fail_prints_what_and_what_to_do_without_reading_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit) as exit:
        fail("no log at [logs]/run.log", "set TRIPWIRE_HOME to the worker's", code=2)
    assert exit.value.exit_code == 2
    assert capsys.readouterr().err == (
        "error: no log at [logs]/run.log; set TRIPWIRE_HOME to the worker's\n"
    )


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (ValueError("ValueError: bad"), "ValueError: bad"),
        (ValueError("two\n  lines"), "ValueError: two lines"),
        (KeyError(), "KeyError"),
    ],
)
def test_an_exception_is_described_with_its_type_once(exc: Exception, shown: str) -> None:
    assert described(exc) == shown

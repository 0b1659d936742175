"""Finding flows in files and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensors.registry import discover_flows, flow_files
from triggers.errors import DeclarationError

FLOW = "from triggers import trigger\n\n@trigger(event='{event}')\ndef {name}() -> None: ...\n"


def write(path: Path, name: str, event: str = "e") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FLOW.format(name=name, event=event))
    return path


def test_folders_are_searched_recursively_skipping_private_hidden_and_test_files(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a.py", "a")
    write(tmp_path / "sub" / "b.py", "b")
    write(tmp_path / "_private.py", "p")
    write(tmp_path / ".hidden" / "h.py", "h")
    write(tmp_path / "test_flows.py", "t")
    (tmp_path / "notes.txt").write_text("not python")
    assert sorted(f.name for f in discover_flows([tmp_path])) == ["a", "b"]


def test_an_imported_flow_is_declared_where_it_is_defined(tmp_path: Path) -> None:
    write(tmp_path / "origin.py", "origin")
    (tmp_path / "reexport.py").write_text("from origin import origin\n")
    [flow] = discover_flows([tmp_path])
    assert flow.entrypoint.path == str((tmp_path / "origin.py").resolve())


def test_two_flows_with_one_name_are_refused_naming_both_files(tmp_path: Path) -> None:
    first = write(tmp_path / "one" / "flows.py", "same")
    second = write(tmp_path / "two" / "flows.py", "same")
    with pytest.raises(DeclarationError) as caught:
        discover_flows([first, second])
    assert str(first.resolve()) in str(caught.value) and str(second.resolve()) in str(caught.value)


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeclarationError, match="does not exist"):
        flow_files([tmp_path / "nope"])


def test_a_file_that_is_not_python_is_refused(tmp_path: Path) -> None:
    (tmp_path / "flows.yaml").write_text("")
    with pytest.raises(DeclarationError, match="not a Python file"):
        flow_files([tmp_path / "flows.yaml"])

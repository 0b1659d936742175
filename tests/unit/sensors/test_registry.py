"""Finding flows in files and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensors.registry import discover_flows, discover_sources, flow_files
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


def test_a_file_that_is_neither_python_nor_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "flows.txt").write_text("")
    with pytest.raises(DeclarationError, match="neither a Python file nor a YAML file"):
        flow_files([tmp_path / "flows.txt"])


def test_sources_come_from_named_yaml_files_sources_yaml_in_folders_and_python(
    tmp_path: Path,
) -> None:
    def source(name: str) -> str:
        return f"sources:\n  - {{name: {name}, url: 'redis://h', stream: s, event: e}}\n"

    (tmp_path / "named.yaml").write_text(source("named"))
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "sources.yaml").write_text(source("plain"))
    (folder / "orders.sources.yml").write_text(source("dotted"))
    (folder / "values.yaml").write_text("replicas: 2\n")  # not a sources file: never read
    (folder / "flow.py").write_text(
        "from triggers import EventSource\n"
        "mine = EventSource(name='in_python', url='redis://h', stream='s', event='e')\n"
    )
    found = discover_sources([tmp_path / "named.yaml", folder])
    assert sorted(s.name for s in found) == ["dotted", "in_python", "named", "plain"]
    assert flow_files([tmp_path / "named.yaml", folder]) == [folder / "flow.py"]


def test_two_different_sources_with_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("sources: [{name: s, url: 'redis://h', stream: a, event: e}]")
    (tmp_path / "b.yaml").write_text("sources: [{name: s, url: 'redis://h', stream: b, event: e}]")
    with pytest.raises(DeclarationError, match="two sources are named 's'"):
        discover_sources([tmp_path / "a.yaml", tmp_path / "b.yaml"])

"""Finding flows in files and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensors.registry import (
    FlowImportError,
    discover,
    discover_flows,
    discover_sources,
    flow_files,
    load_declarations,
)
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
    with pytest.raises(DeclarationError, match=r"source 's' is declared in .*a\.yaml already"):
        discover_sources([tmp_path / "a.yaml", tmp_path / "b.yaml"])


BROKEN = {
    "env.py": "import os\n\n\nKEY = os.environ['TRIPWIRE_NO_SUCH_KEY']\n",
    "syntax.py": "from triggers import trigger\n\ndef f(:\n    pass\n",
    "uses_helper.py": "import broken_helper\n",
    "broken_helper.py": "X = 1\nraise RuntimeError('the helper is broken')\n",
    "exits.py": "import sys\nsys.exit(3)\n",
}


def _broken_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    write(folder / "good.py", "good")
    for name, text in BROKEN.items():
        (folder / name).write_text(text)
    return folder


def test_every_file_that_fails_to_import_is_a_problem_and_the_others_load(
    tmp_path: Path,
) -> None:
    # Given a folder with one good flow file and five that fail in different ways
    folder = _broken_folder(tmp_path)
    # When it is loaded
    found = load_declarations([folder])
    # Then the good flow is there, and each bad file is one line: its line, the error once,
    # and the user's own code that raised
    assert [f.name for f in found.flows] == ["good"]
    lines = {Path(p.path).name: p.short() for p in found.problems}
    assert sorted(lines) == sorted(BROKEN)
    assert lines["env.py"].endswith(
        "env.py:4: KeyError: 'TRIPWIRE_NO_SUCH_KEY' (KEY = os.environ['TRIPWIRE_NO_SUCH_KEY'])"
    )
    assert lines["syntax.py"].endswith("syntax.py:3: SyntaxError: invalid syntax (def f(:)")
    assert lines["broken_helper.py"].endswith(
        "broken_helper.py:2: RuntimeError: the helper is broken "
        "(raise RuntimeError('the helper is broken'))"
    )
    # A file that fails in a module of the user's own points at that module's line
    assert lines["uses_helper.py"].endswith(
        "uses_helper.py:1: RuntimeError: the helper is broken "
        f"({folder / 'broken_helper.py'}:2: raise RuntimeError('the helper is broken'))"
    )
    assert lines["exits.py"].endswith("exits.py:2: SystemExit: 3 (sys.exit(3))")
    assert all("Traceback (most recent call last)" in p.traceback for p in found.problems)


def test_discover_refuses_all_of_it_naming_every_file_that_fails(tmp_path: Path) -> None:
    folder = _broken_folder(tmp_path)
    with pytest.raises(FlowImportError) as caught:
        discover([folder])
    message = str(caught.value)
    assert message.startswith(
        "5 files failed to load, so nothing was loaded; fix them and try again:"
    )
    assert len(caught.value.problems) == 5 and message.count("\n  ") == 5


def test_a_file_that_declares_a_taken_flow_name_is_a_problem_of_that_file(
    tmp_path: Path,
) -> None:
    first = write(tmp_path / "a" / "flows.py", "same")
    second = write(tmp_path / "b" / "flows.py", "same")
    found = load_declarations([first, second])
    assert [f.entrypoint.path for f in found.flows] == [str(first.resolve())]
    [problem] = found.problems
    assert problem.path == str(second.resolve())
    assert f"flow 'same' is declared in {first.resolve()} already" in problem.error


def test_a_module_of_a_package_in_the_folder_loads_with_its_relative_imports(
    tmp_path: Path,
) -> None:
    # Given a flow folder with a package of the user's, whose modules import each other
    folder = tmp_path / "flows"
    write(folder / "good.py", "good")
    package = folder / "mylib_for_this_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "core.py").write_text("VALUE = 1\n")
    (package / "extra.py").write_text("from .core import VALUE\n\nDOUBLE = VALUE * 2\n")
    # When it is loaded, every file loads: the package's modules under their own names
    found = load_declarations([folder])
    assert found.problems == [] and [f.name for f in found.flows] == ["good"]

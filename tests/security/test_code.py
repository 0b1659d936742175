"""No code path of the SDK or the engine hands text to a shell, an evaluator or a loader of
objects: checked on the source, so that a change adding one fails here and gets a review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SOURCES = sorted((ROOT / "triggers").rglob("*.py")) + sorted((ROOT / "sensors").rglob("*.py"))

# Calls that run text as code or commands, or build objects from untrusted bytes.
FORBIDDEN_CALLS = {
    "eval",
    "exec",
    "compile",
    "os.system",
    "os.popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
    "pickle.loads",
    "pickle.load",
    "marshal.loads",
    "shelve.open",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "jinja2.Template",
    "Template",
}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _findings(path: Path) -> list[str]:
    """Each forbidden call in ``path``, as ``FILE:LINE: name()``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        where = f"{path.name}:{node.lineno}"
        if name in FORBIDDEN_CALLS or name.endswith(".from_string"):
            found.append(f"{where}: {name}()")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"{where}: {name}(shell=...)")
    return found


def test_the_sources_are_found() -> None:
    assert len(SOURCES) > 50


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shell_evaluator_or_object_loader(path: Path) -> None:
    assert _findings(path) == []


def test_the_check_itself_sees_each_kind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os, subprocess, yaml\n"
        "subprocess.run('ls', shell=True)\n"
        "os.system('ls')\n"
        "yaml.load(text)\n"
        "env.from_string(text)\n"
        "eval(text)\n"
    )
    assert [f.split(": ", 1)[1] for f in _findings(bad)] == [
        "subprocess.run(shell=...)",
        "os.system()",
        "yaml.load()",
        "env.from_string()",
        "eval()",
    ]

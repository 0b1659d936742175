"""Writing a generated flow file, and checking that it loads into the flows it should.

The check imports the file as tripwire does (``triggers.loader``), so every declaration
is validated by the SDK's own decorators; the specs it builds are what a deploy sends.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensors.interop.argo_params import REQUIRED, Param
from sensors.interop.findings import Finding
from sensors.interop.pysource import comment, literal, reserved_names
from triggers.declarations import flow_spec, is_flow
from triggers.loader import load_file
from triggers.spec import FlowSpec

__all__ = ["MODULE_NAMES", "FlowPlan", "load_flows", "render"]

_LINE = 100
_HEADINGS = {
    "refused": "Refused (not translated, so not in this file):",
    "dropped": "Dropped (no tripwire equivalent; nothing else changes):",
    "differs": "Differs (translated; worth knowing):",
}
_TEXT_HELPER = '''def _text(value: Any) -> str:
    """A parameter as Argo passes it on: a string as it is, other JSON values as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
'''


@dataclass
class FlowPlan:
    """One flow to write: its decorators' arguments, its parameters and its body."""

    name: str
    where: str  # what it is made of, for reports: "trigger 'ship-order'"
    doc: str
    trigger: dict[str, Any]
    target: tuple[str, dict[str, Any]] | None
    params: list[Param]
    body: list[str] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)


def render(plans: list[FlowPlan], findings: list[Finding], title: str, origin: str) -> str:
    """The flow file: where it comes from and the findings as comments on top, then one
    function per plan."""
    lines = [
        *comment(title),
        *comment(origin),
        "# Review it, then deploy it with `tripwire deploy`.",
    ]
    for kind, heading in _HEADINGS.items():
        chosen = [f for f in findings if f.kind == kind]
        if chosen:
            lines += ["#", f"# {heading}"]
            lines += [line for f in chosen for line in comment(f"- {f.line()}")]
    lines += [f'"""{_docstring(title)}"""', ""]
    needs = set().union(*(p.imports for p in plans)) if plans else set()
    typed = any(p.annotation == "Any" for plan in plans for p in plan.params)
    lines += _preamble(needs, typed=typed, targets=any(p.target for p in plans))
    for plan in plans:
        lines += ["", *_flow(plan)]
    return "\n".join(lines).rstrip() + "\n"


def _preamble(needs: set[str], *, typed: bool, targets: bool) -> list[str]:
    """The imports and helpers of a file whose flows need ``needs`` (module names and
    ``current``), with parameters typed ``Any`` or not, and targets or not."""
    lines = ["from __future__ import annotations", ""]
    imports = [f"import {name}" for name in ("json", "subprocess") if name in needs]
    if "json" in needs or typed:
        imports.append("from typing import Any")
    lines += [*imports, ""] if imports else []
    names = ["current"] if "current" in needs else []
    names += ["target"] if targets else []
    lines += [f"from triggers import {', '.join([*names, 'trigger'])}", ""]
    if "json" in needs:
        lines += ["", _TEXT_HELPER]
    return lines


MODULE_NAMES = reserved_names(
    "\n".join(_preamble({"current", "json", "subprocess"}, typed=True, targets=True))
)
"""What a generated file binds at its top level or reads there (builtins its helper
uses): a flow or a parameter named so would shadow it."""


def _docstring(title: str) -> str:
    return title.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _flow(plan: FlowPlan) -> list[str]:
    lines: list[str] = []
    if plan.target is not None:
        url, options = plan.target
        lines += _decorator("target", [url], options)
    lines += _decorator("trigger", [], plan.trigger)
    ordered = [p for p in plan.params if p.default is REQUIRED] + [
        p for p in plan.params if p.default is not REQUIRED
    ]
    params = ", ".join(
        f"{p.name}: {p.annotation}" + ("" if p.default is REQUIRED else f" = {literal(p.default)}")
        for p in ordered
    )
    head = f"def {plan.name}({params}) -> None:"
    if len(head) > _LINE:
        head = f"def {plan.name}(\n" + "".join(f"    {part},\n" for part in params.split(", "))
        head += ") -> None:"
    lines += [head, f'    """{_docstring(plan.doc)}"""']
    lines += [f"    {line}" for line in plan.body]
    return lines


def _decorator(name: str, positional: list[Any], keywords: dict[str, Any]) -> list[str]:
    arguments = [literal(p) for p in positional] + [
        f"{key}={literal(value)}" for key, value in keywords.items()
    ]
    one = f"@{name}({', '.join(arguments)})"
    if len(one) <= _LINE and "\n" not in one:
        return [one]
    arguments = [literal(p, 4) for p in positional] + [
        f"{key}={literal(value, 4)}" for key, value in keywords.items()
    ]
    return [f"@{name}(", *(f"    {a}," for a in arguments), ")"]


def load_flows(source: str) -> list[FlowSpec]:
    """The flow specs a flow file's source declares, loaded as tripwire loads flow files.

    Raises:
        DeclarationError: a declaration the SDK refuses (the message says which).
    """
    with tempfile.TemporaryDirectory(prefix="tripwire-import-") as temporary:
        folder = str(Path(temporary).resolve())
        path = Path(folder) / "flows.py"
        path.write_text(source)
        try:
            module = load_file(path)
            return [
                flow_spec(value, path=path)
                for value in vars(module).values()
                if is_flow(value) and value.__module__ == module.__name__
            ]
        finally:
            # The loader keeps what it loaded (by path, with its folder on sys.path); this
            # file is gone once checked.
            for key, loaded in list(sys.modules.items()):
                if str(getattr(loaded, "__file__", "") or "").startswith(folder):
                    del sys.modules[key]
            while folder in sys.path:
                sys.path.remove(folder)

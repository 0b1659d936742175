"""Metaflow flows as tripwire flows.

A ``FlowSpec`` class found in a flow file is deployed with the triggers Metaflow's own
decorators declare on it: ``@trigger``, ``@trigger_on_finish`` and ``@project``. They are
read through Metaflow's decorator objects (their ``flow_init`` and deploy-time hooks), not
by parsing source, and given the meaning Metaflow's Argo Workflows integration gives them:

- one event without ``parameters`` fills every parameter from the payload field of the
  same name; otherwise only what ``parameters`` maps is filled;
- a mapped field missing from the payload filters the event out when its parameter is
  required, and leaves an optional parameter to its default;
- a parameter mapped by two events, an unknown parameter, a bad event name or payload
  key is a deploy error, as are Metaflow's own (duplicate events, ``event`` and ``events``);
- held events stay until the trigger fires, or until a tick of
  ``options={"reset_at": {"cron": ..., "timezone": ...}}`` drops them;
- ``@trigger_on_finish(flow="Foo")`` waits for ``metaflow.[PROJECT.BRANCH.]Foo.end``,
  which tripwire publishes when its run of ``Foo`` succeeds (the lifecycle relay), as
  Metaflow does on Argo.

A run is ``python flow.py run --PARAM VALUE ...`` (:mod:`triggers.run`), so Metaflow
parses its own parameters. A flow declared wrongly raises a DeclarationError located at
its class, as a tripwire flow's is at its decorator: ``flows/load.py:4: flow 'LoadFlow': ...``.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic_core
from pydantic import ValidationError

from sensors.runs.models import RunRecord
from triggers.declarations import class_target, first_error
from triggers.envelope import validate_event_name
from triggers.error_text import exception_text
from triggers.errors import DeclarationError
from triggers.filters import Filter
from triggers.locations import flow_subject, shown_path
from triggers.params import ParamSpec
from triggers.spec import (
    Entrypoint,
    EventDependency,
    FlowSpec,
    MetaflowRun,
    ScheduleSpec,
    TriggerSpec,
    metaflow_end_event,
)

__all__ = ["METAFLOW_WINDOW", "end_event", "metaflow_flows"]

log = logging.getLogger(__name__)

METAFLOW_WINDOW = timedelta(days=365)
"""How long a Metaflow trigger holds an event that waits for the others. Argo Events holds
them until the trigger fires or ``reset_at`` ticks; tripwire bounds state by a window."""

_EVENT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_PAYLOAD_KEY = re.compile(r"^[A-Za-z0-9_]+$")
_ANY = {"t": "any"}  # Metaflow parses the values (its own types), not tripwire


def metaflow_flows(module: ModuleType, path: Path) -> list[FlowSpec]:
    """The specs of the Metaflow flows ``module`` (loaded from ``path``) defines."""
    metaflow = sys.modules.get("metaflow")
    if metaflow is None:
        return []  # a module that defines a FlowSpec has imported metaflow
    flows = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, metaflow.FlowSpec)
        and value.__module__ == module.__name__
        and callable(getattr(value, "start", None))  # a base class of flows has no steps
    ]
    if len(flows) > 1:
        raise DeclarationError(
            f"{path} defines the Metaflow flows {sorted(f.__name__ for f in flows)}; "
            "`python flow.py run` runs the one its `__main__` starts, so give each flow a "
            "file of its own, as Metaflow does."
        )
    return [_spec(flow, path) for flow in flows]


def _spec(cls: type, path: Path) -> FlowSpec:
    try:
        return _read(cls, path)
    except DeclarationError as exc:
        exc.locate(shown_path(path), _line(cls), flow_subject(cls))
        raise


def _line(cls: type) -> int | None:
    """The line of a flow class's first decorator (else of its ``class``), if its source
    can be read."""
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return None


def _read(cls: type, path: Path) -> FlowSpec:
    from metaflow.exception import MetaflowException

    name = cls.__name__
    try:
        flow = cls(use_cli=False)
        parameters = _parameters(cls)
        target, options = class_target(cls, [spec.name for spec in parameters.values()])
        decorators = _initialised(flow)
        project = _project(decorators)
        triggers = [
            _trigger(kind, decorators[kind][0], dependencies)
            for kind, dependencies in (
                ("trigger", _events(decorators, parameters)),
                ("trigger_on_finish", _upstreams(decorators, project)),
            )
            if dependencies
        ]
    except MetaflowException as exc:
        raise DeclarationError(exc.message) from None
    upstreams = [t for t in triggers if t.name == "trigger_on_finish"]
    run = MetaflowRun(
        flow=name,
        **project,
        upstream_events=tuple(d.name for t in upstreams for d in t.dependencies),
    )
    try:
        validate_event_name(run.end_event, error=DeclarationError)
    except DeclarationError as exc:
        raise DeclarationError(f"its end event cannot be published: {exc}") from None
    return FlowSpec(
        name=name,
        entrypoint=Entrypoint(function=name, path=str(path.resolve()), metaflow=run),
        parameters=tuple(parameters.values()),
        triggers=tuple(triggers),
        target=target,
        target_options=options,
    )


def _parameters(cls: Any) -> dict[str, ParamSpec]:
    """Metaflow's parameters (not its configs), by lowercase name as Argo keys them."""
    specs: dict[str, ParamSpec] = {}
    for _, param in cls._get_parameters():
        if param.IS_CONFIG_PARAMETER:
            continue
        param.init()
        kwargs = param.kwargs
        default = kwargs.get("default")
        try:
            default = pydantic_core.to_jsonable_python(default) if not callable(default) else None
        except pydantic_core.PydanticSerializationError:
            default = None  # Metaflow computes it in the run
        spec = ParamSpec(
            name=param.name, type=_ANY, required=bool(kwargs.get("required")), default=default
        )
        specs[param.name.lower()] = spec
    return specs


class _NoMetadata:
    """The metadata provider ``@project`` tags runs with; a deploy starts no run."""

    def add_sticky_tags(self, *args: Any, **kwargs: Any) -> None:
        pass


_READ = ("project", "trigger", "trigger_on_finish")  # in this order: names use the project
_IGNORED = ("schedule",)  # flow decorators with a meaning tripwire does not bring over


def _initialised(flow: Any) -> dict[str, list[Any]]:
    """The flow's ``@project``, ``@trigger`` and ``@trigger_on_finish``, after Metaflow's
    own ``flow_init`` and deploy-time hooks (the others need a datastore or an environment,
    and say nothing about when the flow runs)."""
    from metaflow.exception import MetaflowException

    decorators = {k: v for k, v in flow._flow_decorators.items() if k in _READ}
    for name in sorted(set(flow._flow_decorators) & set(_IGNORED)):
        log.warning("Metaflow flow %s: @%s is not brought over to tripwire", flow.name, name)
    _deploy_context(flow)
    for name in _READ:
        for deco in decorators.get(name, ()):
            where = f"@{name}"
            try:
                deco.external_init()
                # The defaults of its command-line options, as the class declares them.
                options = {k.replace("-", "_"): v["default"] for k, v in type(deco).options.items()}
                deco.flow_init(flow, flow._graph, None, None, _NoMetadata(), None, _quiet, options)
                if name != "project":
                    deco.format_deploytime_value()
            except (DeclarationError, MetaflowException):
                raise
            except Exception as exc:
                raise DeclarationError(f"{where}: {exception_text(exc)}") from None
    return decorators


class _LocalDatastore:
    """What Metaflow's parameter context reads of a datastore: its type."""

    TYPE = "local"


def _deploy_context(flow: Any) -> None:
    """What Metaflow's command line sets up before deploy-time values are computed (a
    callable event name, such as ``namespaced_event_name``, reads it)."""
    from metaflow import current, parameters
    from metaflow.flowspec import FlowStateItems
    from metaflow.user_configs.config_parameters import ConfigValue

    configs = type(flow)._flow_state[FlowStateItems.CONFIGS].items()
    current._set_env(flow=flow, is_running=False)
    parameters.set_parameter_context(
        flow.name,
        _quiet,
        _LocalDatastore(),
        {k: v if plain or v is None else ConfigValue(v) for k, (v, plain) in configs},
    )


def _quiet(*args: Any, **kwargs: Any) -> None:
    pass


def _project(decorators: dict[str, list[Any]]) -> dict[str, Any]:
    """``@project``'s name and branch, as its ``flow_init`` put them in ``current``; and the
    options that make every run of it, on any worker, land on that branch."""
    if "project" not in decorators:
        return {}
    from metaflow import current

    attributes = decorators["project"][0].attributes
    branch = current.get("branch_name")
    user_branch = bool(current.get("is_user_branch"))
    return {
        "project": current.get("project_name"),
        "branch": branch,
        "given_branch": attributes.get("branch"),
        "production": bool(attributes.get("production")),
        "owner": branch.removeprefix("user.") if user_branch and branch else None,
    }


def _trigger(name: str, deco: Any, dependencies: list[EventDependency]) -> TriggerSpec:
    """``@trigger`` or ``@trigger_on_finish`` as a trigger: all of its events, held until it
    fires or its ``reset_at`` ticks."""
    return TriggerSpec(
        name=name,
        dependencies=tuple(dependencies),
        within=METAFLOW_WINDOW,
        reset_at=_reset_at(deco.options),
    )


def _events(
    decorators: dict[str, list[Any]], parameters: dict[str, ParamSpec]
) -> list[EventDependency]:
    """``@trigger``'s events, each with its parameters and required fields."""
    if "trigger" not in decorators:
        return []
    events = decorators["trigger"][0].triggers
    seen: set[str] = set()
    dependencies = []
    for event in events:
        name = event["name"]
        if not isinstance(name, str) or not _EVENT_NAME.match(name):
            raise DeclarationError(
                f"@trigger: event name {name!r} may hold only letters, digits, '_', '-' and '.' "
                "(Metaflow's rule)."
            )
        mapping = dict(event.get("parameters") or {})
        implicit = len(events) == 1 and not mapping
        if implicit:  # Metaflow's default: every parameter from the field of its name
            mapping = {spec.name: spec.name for spec in parameters.values()}
        dependencies.append(_dependency(name, mapping, parameters, seen, checked=not implicit))
    return dependencies


def _dependency(
    name: str,
    mapping: dict[str, str],
    parameters: dict[str, ParamSpec],
    seen: set[str],
    *,
    checked: bool = True,
) -> EventDependency:
    """One event of ``@trigger``: its parameters, and a filter for each required one.
    ``checked``: the user wrote the payload keys, so Metaflow's rule for them applies."""
    mapped: dict[str, str] = {}
    filters = []
    for param, field in mapping.items():
        if checked and not _PAYLOAD_KEY.match(field):
            raise DeclarationError(
                f"@trigger: payload key {field!r} of event {name!r} may hold only letters, "
                "digits and '_' (Metaflow's rule)."
            )
        spec = parameters.get(param.lower())
        if spec is None:
            raise DeclarationError(
                f"@trigger: event {name!r} maps parameter {param!r}, which the flow does not "
                f"have; its parameters are {sorted(p.name for p in parameters.values())}."
            )
        if spec.name.lower() in seen:
            raise DeclarationError(
                f"@trigger: parameter {spec.name!r} is mapped by two events; map it from one."
            )
        seen.add(spec.name.lower())
        mapped[spec.name] = field
        if spec.required:
            # Argo's sensor lets through only events that carry every required field.
            filters.append(Filter(path=_field(field), op="exists", value=True))
    return EventDependency(name=name, dep=name, parameters=mapped, filters=tuple(filters))


def _field(key: str) -> str:
    """The JSONPath of top-level payload field ``key``, bracketed: ``$.where`` would read
    a reserved word, ``$.1abc`` a number."""
    return "$[" + json.dumps(key) + "]"


def _reset_at(options: dict[str, Any]) -> ScheduleSpec | None:
    unknown = sorted(set(options) - {"reset_at"})
    if unknown:
        log.warning("Metaflow trigger options %s have no meaning in tripwire; ignored", unknown)
    reset = options.get("reset_at")
    if not reset:
        return None
    if not isinstance(reset, dict) or not reset.get("cron"):
        raise DeclarationError(
            f"options={{'reset_at': {reset!r}}} needs a cron: "
            "{'reset_at': {'cron': '0 0 * * *', 'timezone': 'Europe/Paris'}}."
        )
    try:
        return ScheduleSpec(cron=reset["cron"], tz=reset.get("timezone") or "UTC")
    except ValidationError as exc:
        raise DeclarationError(f"options['reset_at']: {first_error(exc)}") from None


def _upstreams(decorators: dict[str, list[Any]], project: dict[str, Any]) -> list[EventDependency]:
    """``@trigger_on_finish``: the end events of the upstream flows."""
    if "trigger_on_finish" not in decorators:
        return []
    dependencies = []
    for upstream in decorators["trigger_on_finish"][0].triggers:
        project_name = upstream.get("project") or project.get("project")
        branch_name = upstream.get("branch") or project.get("branch")
        if bool(project_name) != bool(branch_name):
            raise DeclarationError(
                f"@trigger_on_finish: flow {upstream['fq_name']!r} has incomplete project "
                "information; give both 'project' and 'project_branch', or use @project."
            )
        qualified = ".".join(v for v in (project_name, branch_name, upstream["flow"]) if v)
        filters = tuple(
            Filter(path=_field(key), op="==", value=value)
            for key, value in (("project_name", project_name), ("branch_name", branch_name))
            if value
        )
        name = metaflow_end_event(qualified)
        dependencies.append(EventDependency(name=name, dep=name, parameters={}, filters=filters))
    return dependencies


def end_event(run: RunRecord, at: datetime) -> tuple[str, str, dict[str, Any]] | None:
    """The event Metaflow on Argo publishes when a run of a flow succeeds, for a tripwire run
    of a Metaflow flow that succeeded at ``at``: its name, id and payload. None for a run of
    another flow. The id is the end task's pathspec, as Metaflow's, so a repeat is one event.
    """
    declared = run.entrypoint.get("metaflow")
    if not declared:
        return None
    flow = MetaflowRun.model_validate(declared)
    reported = (run.outputs or {}).get("metaflow") or {}
    end_task = reported.get("end_task")
    if not isinstance(end_task, str) or end_task.count("/") != 3:
        # Consumers read the run from the id (Metaflow's current.trigger does): no pathspec,
        # no event. A command:// run, or a run whose client could not name its end task.
        log.warning(
            "run %s: no end event %s, since its Metaflow end task is unknown",
            run.name,
            flow.end_event,
        )
        return None
    _, run_id, step_name, task_id = end_task.split("/")
    payload: dict[str, Any] = {
        "id": end_task,
        "name": flow.end_event,
        "pathspec": end_task,
        "flow_name": flow.flow,
        "run_id": run_id,
        "step_name": step_name,
        "task_id": task_id,
        "timestamp": int(at.timestamp()),
        "utc_date": at.astimezone(UTC).strftime("%Y%m%d"),
        "generated-by-metaflow": True,
        "auto-generated-by-metaflow": True,
        "tripwire_run": run.name,
    }
    if flow.project:
        project = {
            "project_name": flow.project,
            "branch_name": flow.branch,
            "is_user_branch": flow.branch is not None and flow.branch.startswith("user."),
            "is_production": flow.production,
            "project_flow_name": flow.project_flow_name,
        }
        payload |= {k: v for k, v in project.items() if v}  # Metaflow leaves out what is not
    return flow.end_event, end_task, payload

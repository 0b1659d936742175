"""The API's signal routes: the events a run waits for (``wait_for_event``), and signalling them.

A run whose ``TRIPWIRE_API_URL`` is set waits through these routes (the SDK's
:class:`~triggers.api_signals.ApiSignals`): it starts waiting (PUT), looks at its
wait (GET) and times it out (POST .../timeout) with a token of scope ``publish``,
the scope that signals it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from sensors.api.auth import Permission
from sensors.api.ingest import BadRequest
from sensors.api.state import ApiState, Domain, Project, RunName, error_responses, state_of
from sensors.runs.signals import give_signal, list_signals, time_out, wait_started, waiting_for
from triggers.waits import Signal, UtcDatetime

__all__ = ["router"]

router = APIRouter()

EventName = Annotated[str, Path(max_length=200, description="The event the run waits for.")]
Action = Annotated[
    str | None,
    Query(max_length=200, description="The part of the run that waits, if it named one."),
]


async def _run_in_scope(
    request: Request, project: str, domain: str, name: str, *permissions: Permission
) -> ApiState:
    """The API's state, once the caller may do one of ``permissions`` in ``project`` and
    the run exists (a 404 names it)."""
    state = state_of(request)
    state.authorize(request, *permissions).require_project(project)
    await state.store.get_run(name, project=project, domain=domain)
    return state


@contextlib.contextmanager
def _typed_values() -> Iterator[None]:
    """A value or type the wait does not take is the caller's error (422), not ours."""
    try:
        yield
    except TypeError as exc:
        raise BadRequest(422, "invalid_signal", str(exc)) from None


class SignalRequest(BaseModel):
    value: bool | int | float | str = Field(description="Of the type the run waits for.")


class WaitRequest(BaseModel):
    expected_type: Literal["bool", "int", "float", "str"] = Field(
        description="What the signal must carry."
    )
    timeout_at: UtcDatetime | None = Field(
        None, description="When the wait gives up; a signal after it is refused. None: never."
    )


@router.get(
    "/api/v1/runs/{project}/{domain}/{name}/events",
    tags=["signals"],
    summary="The events a run waits (or waited) for.",
    responses=error_responses(403, 404, 422, 503),
)
async def list_run_events(
    request: Request,
    project: Project,
    domain: Domain,
    name: RunName,
    action: Action = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Signal]:
    state = await _run_in_scope(request, project, domain, name, "read")
    return await list_signals(
        state.store, project=project, domain=domain, run_name=name, action_name=action, limit=limit
    )


@router.get(
    "/api/v1/runs/{project}/{domain}/{name}/events/{event}",
    tags=["signals"],
    summary="One event a run waits (or waited) for. Scope read, or publish: who signals a "
    "run, and the run itself, see what it waits for.",
    responses=error_responses(403, 404, 422, 503),
)
async def get_run_event(
    request: Request,
    project: Project,
    domain: Domain,
    name: RunName,
    event: EventName,
    action: Action = None,
) -> Signal:
    # A signaller needs the type the run waits for, and a waiting run its wait.
    state = await _run_in_scope(request, project, domain, name, "read", "publish")
    return await waiting_for(
        state.store, project=project, domain=domain, run_name=name, name=event, action_name=action
    )


@router.put(
    "/api/v1/runs/{project}/{domain}/{name}/events/{event}",
    tags=["signals"],
    summary="Start waiting for an event, as wait_for_event does; again, the wait as it stands "
    "(one that ended unsignalled waits again). Scope publish: what a run's own token needs.",
    responses=error_responses(403, 404, 422, 503),
)
async def wait_for_run_event(
    request: Request,
    project: Project,
    domain: Domain,
    name: RunName,
    event: EventName,
    body: WaitRequest,
    action: Action = None,
) -> Signal:
    state = await _run_in_scope(request, project, domain, name, "publish")
    with _typed_values():
        return await wait_started(
            state.store,
            project=project,
            domain=domain,
            run_name=name,
            name=event,
            action_name=action,
            expected_type=body.expected_type,
            timeout_at=body.timeout_at,
        )


@router.post(
    "/api/v1/runs/{project}/{domain}/{name}/events/{event}/timeout",
    tags=["signals"],
    summary="End a wait that still runs as TIMED_OUT; the wait as it stands (SUCCEEDED if a "
    "signal came first). Scope publish: what a run's own token needs.",
    responses=error_responses(403, 404, 422, 503),
)
async def time_out_run_event(
    request: Request,
    project: Project,
    domain: Domain,
    name: RunName,
    event: EventName,
    action: Action = None,
) -> Signal:
    state = await _run_in_scope(request, project, domain, name, "publish")
    where = {"project": project, "domain": domain, "run_name": name, "name": event}
    await waiting_for(state.store, **where, action_name=action)  # 404 names the event
    return await time_out(state.store, **where, action_name=action)


@router.post(
    "/api/v1/runs/{project}/{domain}/{name}/events/{event}/signal",
    tags=["signals"],
    summary="Signal a run that waits for an event; the value must be of the type it waits for.",
    responses=error_responses(403, 404, 409, 422, 503),
)
async def signal_run_event(
    request: Request,
    project: Project,
    domain: Domain,
    name: RunName,
    event: EventName,
    body: SignalRequest,
    action: Action = None,
) -> Signal:
    state = await _run_in_scope(request, project, domain, name, "publish")
    with _typed_values():
        return await give_signal(
            state.store,
            project=project,
            domain=domain,
            run_name=name,
            name=event,
            action_name=action,
            value=body.value,
        )

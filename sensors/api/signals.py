"""The API's signal routes: the events a run waits for (``wait_for_event``), and signalling them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from sensors.api.ingest import BadRequest
from sensors.api.state import Domain, Project, RunName, error_responses, state_of
from sensors.runs.signals import Signal, give_signal, list_signals

__all__ = ["router"]

router = APIRouter()


class SignalRequest(BaseModel):
    value: bool | int | float | str = Field(description="Of the type the run waits for.")


@router.get(
    "/api/v1/runs/{project}/{domain}/{name}/events",
    tags=["signals"],
    summary="The events a run waits (or waited) for.",
    responses=error_responses(403, 404, 422, 503),
)
async def list_run_events(
    request: Request, project: Project, domain: Domain, name: RunName
) -> list[Signal]:
    state = state_of(request)
    state.authorize(request, "read").require_project(project)
    await state.store.get_run(name, project=project, domain=domain)
    return await list_signals(state.store, project=project, domain=domain, run_name=name)


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
    event: Annotated[str, Path(max_length=200)],
    body: SignalRequest,
) -> Signal:
    state = state_of(request)
    state.authorize(request, "publish").require_project(project)
    await state.store.get_run(name, project=project, domain=domain)  # 404 names the run
    try:
        return await give_signal(
            state.store, project=project, domain=domain, run_name=name, name=event, value=body.value
        )
    except TypeError as exc:
        raise BadRequest(422, "invalid_signal", str(exc)) from None

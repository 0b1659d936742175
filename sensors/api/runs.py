"""The API's run routes: list runs, one run's detail, create, abort and recover."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field

from sensors.api.ingest import BadRequest
from sensors.api.state import SCOPE, Domain, Project, RunName, error_responses, state_of
from sensors.queries.runs import RunDetail, parse_since, run_detail
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase

__all__ = ["router"]

router = APIRouter()


class AbortRequest(BaseModel):
    cause: str = Field("aborted through the API", max_length=2000, description="Why.")


class AbortResult(BaseModel):
    run: RunRecord
    changed: bool = Field(description="False when the run had ended or was aborting already.")


class CreateRequest(BaseModel):
    project: str = Field(pattern=SCOPE)
    domain: str = Field(pattern=SCOPE)
    flow: str = Field(max_length=200, description="A deployed flow's name.")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="By the flow's parameter names; a name the flow does not have is refused "
        "(422), listing its parameters.",
    )
    name: str | None = Field(
        None,
        pattern=SCOPE,  # run names follow the same rule as project and domain names
        description="Run name (default: generated): lowercase letters, digits and '-', up to "
        "63; the same name is one run.",
    )


class CreateResult(BaseModel):
    run: RunRecord
    created: bool = Field(description="False when a run of that name existed: nothing started.")


class RecoverRequest(BaseModel):
    project: str = Field(pattern=SCOPE)
    domain: str = Field(pattern=SCOPE)
    name: str = Field(max_length=253)


@router.get(
    "/api/v1/runs",
    tags=["runs"],
    summary="Runs, newest first.",
    responses=error_responses(403, 422, 503),
)
async def list_runs(
    request: Request,
    project: Annotated[str | None, Query(pattern=SCOPE)] = None,
    domain: Annotated[str | None, Query(pattern=SCOPE)] = None,
    flow: Annotated[str | None, Query(max_length=200)] = None,
    phase: Annotated[WorkflowPhase | None, Query()] = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="Created at or after: ISO 8601, or a duration ago (2h)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RunRecord]:
    state = state_of(request)
    principal = state.authorize(request, "read")
    projects: list[str | None] = [project] if project else [*principal.projects] or [None]
    for each in projects:
        if each is not None:
            principal.require_project(each)
    try:
        after = parse_since(since, datetime.now(UTC)) if since else None
    except ValueError as exc:
        raise BadRequest(422, "invalid_request", f"since: {exc}") from None
    found: list[RunRecord] = []
    for each in projects:
        found += await state.store.list_runs(
            project=each, domain=domain, flow=flow, phase=phase, since=after, limit=limit
        )
    found.sort(key=lambda r: r.created_at, reverse=True)
    return found[:limit]


@router.get(
    "/api/v1/runs/{project}/{domain}/{name}",
    tags=["runs"],
    summary="One run, with its attempts and phase history.",
    responses=error_responses(403, 404, 422, 503),
)
async def get_run(request: Request, project: Project, domain: Domain, name: RunName) -> RunDetail:
    state = state_of(request)
    state.authorize(request, "read").require_project(project)
    return await run_detail(state.store, name, project=project, domain=domain)


@router.delete(
    "/api/v1/runs/{project}/{domain}/{name}",
    tags=["runs"],
    summary="Abort a run: a queued one at once, a running one through ABORTING.",
    responses=error_responses(403, 404, 422, 503),
)
async def abort_run(
    request: Request,
    project: Project,
    domain: Domain,
    name: RunName,
    body: Annotated[AbortRequest | None, Body()] = None,
) -> AbortResult:
    state = state_of(request)
    state.authorize(request, "admin").require_project(project)
    cause = (body or AbortRequest()).cause
    run, changed = await state.store.request_abort(project, domain, name, cause)
    return AbortResult(run=run, changed=changed)


@router.post(
    "/api/v1/runs",
    tags=["runs"],
    summary="Start a run of a deployed flow by hand, as `tripwire runs create` does.",
    status_code=201,
    responses=error_responses(403, 404, 422, 503),
)
async def create_run(request: Request, body: CreateRequest) -> CreateResult:
    state = state_of(request)
    state.authorize(request, "admin").require_project(body.project)
    service = await state.runs()
    run, created = await service.create(
        body.flow, body.parameters, name=body.name, project=body.project, domain=body.domain
    )
    return CreateResult(run=run, created=created)


@router.post(
    "/api/v1/runs/recover",
    tags=["runs"],
    summary="Run a finished run again as NAME-rN, with the same inputs and flow revision.",
    status_code=201,
    responses=error_responses(403, 404, 409, 422, 503),
)
async def recover_run(request: Request, body: RecoverRequest) -> RunRecord:
    state = state_of(request)
    state.authorize(request, "admin").require_project(body.project)
    service = await state.runs()
    return await service.recover(body.name, project=body.project, domain=body.domain)

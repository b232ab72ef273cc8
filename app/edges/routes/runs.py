"""`POST /runs`: an orchestrator runs a pipeline (or builds SQL models) synchronously and gets
the run report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.edges.deps import RunsCaller, ServiceDep
from app.edges.routes.schemas import ERROR_RESPONSES, RunReportBody
from app.ops.service import MODELS_RUN, RunRequest
from core.errors import RequestError

router = APIRouter(tags=["runs"], dependencies=[RunsCaller])


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str | None = Field(
        default=None, description="Pipeline name; or omit and give `source`"
    )
    source: str | None = Field(
        default=None,
        description="Narrow the pipeline's source to this object/glob (must lie inside it); "
        "alone, it selects the pipeline whose pattern matches it",
        examples=["gs://data-bucket/raw-data.csv"],
    )
    generation: int | None = Field(default=None, description="Load this object generation")
    params: dict[str, str] = Field(default_factory=dict, description="API query overrides")
    idempotency_key: str | None = Field(
        default=None, max_length=200, description="A repeated key returns the first run's report"
    )
    models: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None,
        max_length=500,
        description="Build these SQL models and those downstream of them instead of loading "
        "(`[]`: every model); not combined with `pipeline` or `source`",
        examples=[["ratings_curated"]],
    )
    full_refresh: bool = Field(
        default=False,
        description="With `models`: incremental models read all their upstream rows instead "
        "of only the loads since their last build",
    )


@router.post(
    "/runs",
    summary="Run a pipeline to completion and return its report",
    response_model=None,
    responses={**ERROR_RESPONSES, 200: {"model": RunReportBody, "description": "the run's report"}},
)
def create_run(
    body: RunBody,
    service: ServiceDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    if body.models is not None:
        if body.pipeline or body.source or body.generation is not None or body.params:
            raise RequestError("'models' builds models only: give it alone")
        build = RunRequest(
            pipeline=MODELS_RUN,
            models=tuple(body.models),
            full_refresh=body.full_refresh,
            idempotency_key=body.idempotency_key or idempotency_key,
            trigger="http",
        )
        return JSONResponse(service.execute(build).to_dict())
    if body.full_refresh:
        raise RequestError("'full_refresh' applies to a build: give it with 'models'")
    if body.pipeline is None and body.source is None:
        raise RequestError("give 'pipeline', 'source', or both")
    pipeline = body.pipeline or service.catalog.pipeline_for_uri(str(body.source)).name
    request = RunRequest(
        pipeline=pipeline,
        source_uri=body.source,
        generation=body.generation,
        params=body.params,
        idempotency_key=body.idempotency_key or idempotency_key,
        trigger="http",
    )
    # the typed report is serialised here, at the edge
    return JSONResponse(service.execute(request).to_dict())

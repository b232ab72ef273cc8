"""Build a list of models in dependency order and report each one.

A model that fails is reported with its error; models that read it are skipped (their old
versions stay), every other model still builds. Nothing here touches the load before it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.destinations.pipeline import destination_lock, staging_token
from app.destinations.registry import engine_for
from app.models.compile import ModelSet
from app.models.materialize import Materializer
from app.models.report import ModelReport
from core import failpoints
from core.errors import (
    FerryError,
    ModelFailedError,
    ModelUnavailableError,
    classify,
)
from core.settings import Settings

log = logging.getLogger("ferry.models")


@dataclass
class BuildResult:
    models: list[ModelReport] = field(default_factory=list)
    error: FerryError | None = None
    """The first failure, if any (its code and recovery decide the run's outcome)."""


def build_models(
    names: Sequence[str], models: ModelSet, settings: Settings, pipeline: Any, run_id: str
) -> BuildResult:
    """Build `names` (already in dependency order) through `pipeline`'s SQL client."""
    result = BuildResult()
    engine = engine_for(settings).models
    warehouse = engine.warehouse(settings)
    token = staging_token(run_id)
    not_built: set[str] = set()
    built: set[str] = set()
    for name in names:
        spec, query = models.specs[name], models.queries[name]
        report = ModelReport(name=name, materialization=spec.materialization)
        result.models.append(report)
        blocked = sorted(query.upstream & not_built)
        if blocked:
            report.status = "skipped"
            report.reason = f"upstream model {', '.join(blocked)} not built"
            not_built.add(name)
            continue
        started = time.perf_counter()
        try:
            with destination_lock(settings), pipeline.sql_client() as client:
                materializer = Materializer(
                    client, engine, warehouse, token, settings.bigquery_location
                )
                missing = [
                    table
                    for table in sorted(query.upstream - built)
                    if materializer.kind(table) is None
                ]
                if missing:
                    # a first deploy: the pipelines that feed this model have not all run yet
                    report.status = "skipped"
                    report.reason = f"upstream table {', '.join(missing)} does not exist yet"
                    not_built.add(name)
                else:
                    log.info("build model %s", name)
                    failpoints.hit("model_build")
                    report.rows = materializer.build(spec, query)
                    built.add(name)
        except Exception as raw:
            error = model_error(name, raw)
            error.run_id = run_id
            report.status, report.error = "failed", error.to_dict()
            not_built.add(name)
            result.error = result.error or error
            log.warning("model %s failed: %s", name, error)
        else:
            rows = "" if report.rows is None else f" ({report.rows} rows)"
            log.info("model %s %s%s", name, report.status, report.reason or rows)
        finally:
            report.seconds = round(time.perf_counter() - started, 4)
    return result


def model_error(name: str, raw: BaseException) -> FerryError:
    """A model's failure with its own code: a check or SQL error is terminal, an outage not."""
    from dlt.destinations.exceptions import (
        DatabaseTerminalException,
        DatabaseTransientException,
        DatabaseUndefinedRelation,
    )

    if isinstance(raw, FerryError) and raw.code.startswith("model_"):
        return raw
    details = {"model": name}
    text = f"model '{name}': {raw}"
    if isinstance(raw, DatabaseTerminalException | DatabaseUndefinedRelation):
        return ModelFailedError(text, details=details)
    if isinstance(raw, DatabaseTransientException):
        return ModelUnavailableError(text, details=details)
    classified = classify(raw)
    kind = ModelUnavailableError if classified.retriable else ModelFailedError
    return kind(f"model '{name}': {classified.message}", details=details)

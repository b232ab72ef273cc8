"""Build a list of models in dependency order and report each one.

A model that fails is reported with its error; models that read it are skipped (their old
versions stay), every other model still builds. Nothing here touches the load before it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from app.destinations.pipeline import destination_lock, destination_writer, staging_token
from app.destinations.registry import engine_for
from app.models.compile import ModelSet
from app.models.materialize import Materializer
from app.models.report import ModelReport
from app.models.transpile import ModelQuery
from core import failpoints
from core.errors import (
    FerryError,
    ModelFailedError,
    ModelUnavailableError,
    classify,
)
from core.model_spec import ModelSpec
from core.settings import Settings

log = logging.getLogger("ferry.models")


@dataclass
class BuildResult:
    models: list[ModelReport] = field(default_factory=list)
    error: FerryError | None = None
    """The first failure, if any (its code and recovery decide the run's outcome)."""


def build_models(
    names: Sequence[str],
    models: ModelSet,
    settings: Settings,
    pipeline: Any,
    run_id: str,
    full_refresh: bool = False,
) -> BuildResult:
    """Build `names` (already in dependency order) through `pipeline`'s SQL client;
    `full_refresh`: incremental models read their upstream whole."""
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
            with (
                destination_lock(settings),
                _writers(settings, spec, query),
                pipeline.sql_client() as client,
            ):
                materializer = Materializer(
                    client, engine, warehouse, token, settings.bigquery_location, run_id
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
                    report.rows = materializer.build(
                        spec,
                        query,
                        report,
                        models=frozenset(models.specs),
                        full_refresh=full_refresh,
                    )
                    built.add(name)
        except Exception as raw:
            error = model_error(name, raw, query.sql)
            error.run_id = run_id
            report.status, report.error = "failed", error.to_dict()
            not_built.add(name)
            result.error = result.error or error
            # the destination's own words (data values, the SQL as sent) go to the log only
            log.warning("model %s failed: %s; the destination said: %s", name, error, raw)
        else:
            rows = "" if report.rows is None else f" ({report.rows} rows)"
            log.info("model %s %s%s", name, report.status, report.reason or rows)
        finally:
            report.seconds = round(time.perf_counter() - started, 4)
    return result


@contextmanager
def _writers(settings: Settings, spec: ModelSpec, query: ModelQuery) -> Iterator[None]:
    """An incremental model's build holds its table's writer and its upstream tables': two
    builds never add the same new rows twice, and no load commits between the build's reading
    of the upstream's figures and its reading of the rows (watermark.py). Taken in name
    order, as a load takes one writer only: no two holders wait on each other."""
    with ExitStack() as stack:
        if spec.materialization == "incremental":
            for table in sorted({spec.name, *query.upstream}):
                stack.enter_context(destination_writer(settings, table))
        yield


def model_error(name: str, raw: BaseException, sql: str = "") -> FerryError:
    """A model's failure with its own code: a check or SQL error is terminal, an outage not.

    The message names the model, the error and the line of the model's own SQL it points at;
    never the data values in the destination's message, nor the SQL as ferry sent it (with
    its internal table names): those go to the log."""
    from dlt.destinations.exceptions import (
        DatabaseTerminalException,
        DatabaseTransientException,
        DatabaseUndefinedRelation,
    )

    if isinstance(raw, FerryError) and raw.code.startswith("model_"):
        return raw
    details = {"model": name}
    if isinstance(raw, DatabaseTerminalException | DatabaseUndefinedRelation):
        return ModelFailedError(_described(name, raw, sql), details=details)
    if isinstance(raw, DatabaseTransientException):
        return ModelUnavailableError(_described(name, raw, sql), details=details)
    classified = classify(raw)
    kind = ModelUnavailableError if classified.retriable else ModelFailedError
    return kind(f"model '{name}': {_without_values(classified.message)}", details=details)


_QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'")
_DOUBLE_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_CARET = re.compile(r"^LINE \d+: (?P<text>.*)\n(?P<pad> *)(?P<marks>\^+)", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _described(name: str, raw: BaseException, sql: str) -> str:
    inner = getattr(raw, "dbapi_exception", None) or raw.__cause__ or raw
    text = str(inner)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(inner).__name__)
    where = _user_line(text, sql)
    return f"model '{name}': {_without_values(first)}{where}"


def _without_values(text: str) -> str:
    """One line without the data values a destination quotes (a conversion error names the
    value it could not convert): those stay in the log."""
    text = _QUOTED.sub("'…'", text)
    if "onver" in text or "format" in text:  # conversion errors quote values in "" too
        text = _DOUBLE_QUOTED.sub('"…"', text)
    cut = text.find(" CREATE ")  # never the statement ferry sent
    return text[:cut].rstrip(" :") if cut > 0 else text


def _user_line(text: str, sql: str) -> str:
    """` (line N of its SQL: ...)`, the line of the model's own SQL the destination's caret
    points at (its SQL differs from the user's: translated, tables qualified), matched by
    the words under the caret; empty when none matches."""
    found = _CARET.search(text)
    if not found or not sql:
        return ""
    start = len(found["pad"]) - (found.start("text") - found.start())
    fragment = found["text"][max(start, 0) : max(start, 0) + len(found["marks"])]
    words = {word.lower() for word in _WORD.findall(fragment) if len(word) > 1}
    best, best_score = None, 0
    for number, line in enumerate(sql.splitlines(), start=1):
        score = len(words & {word.lower() for word in _WORD.findall(line)})
        if score > best_score:
            best, best_score = (number, line.strip()), score
    if best is None:
        return ""
    number, line = best
    shown = line if len(line) <= 120 else line[:117] + "..."
    return f" (line {number} of its SQL: {shown})"

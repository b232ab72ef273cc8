"""`GET /runs`, `GET /runs/{run_id}` and `GET /ui/runs`: recent runs from the run log."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from app.edges.deps import RunsCaller, ServiceDep
from app.edges.headers import page_csp
from app.edges.routes.schemas import (
    ERROR_RESPONSES,
    HTML_ROUTE_ERROR_RESPONSES,
    RunReportBody,
)
from app.ops.runlog import MAX_LIMIT, RunLog
from app.ops.service import RunService
from core.errors import RunNotFoundError

router = APIRouter(tags=["history"], dependencies=[RunsCaller])

Status = Literal["succeeded", "failed", "skipped"]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many runs")]
PipelineFilter = Annotated[str | None, Query(max_length=200, description="Only this pipeline")]
StatusFilter = Annotated[Status | None, Query(description="Only runs with this status")]
# an HTML form sends its empty fields as `?pipeline=&status=`: empty means "any"
FormStatusFilter = Annotated[
    Literal["", "succeeded", "failed", "skipped"] | None,
    Query(description="Only runs with this status (empty: any)"),
]


class ModelSummary(BaseModel):
    name: str
    status: Literal["built", "failed", "skipped"]
    rows: int | None = None
    seconds: float = 0.0
    error_code: str | None = None

    @classmethod
    def of(cls, model: dict[str, Any]) -> ModelSummary:
        return cls(
            name=model["name"],
            status=model["status"],
            rows=model.get("rows"),
            seconds=model.get("seconds") or 0.0,
            error_code=(model.get("error") or {}).get("code"),
        )


class RunSummary(BaseModel):
    run_id: str
    pipeline: str
    status: Status
    trigger: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    tables: dict[str, int] = Field(default_factory=dict, description="Rows loaded per table")
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    seconds_total: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    models: list[ModelSummary] = Field(
        default_factory=list, description="SQL models built after the load, in build order"
    )

    @classmethod
    def of(cls, report: dict[str, Any]) -> RunSummary:
        error = report.get("error") or {}
        return cls(
            run_id=report["run_id"],
            pipeline=report["pipeline"],
            status=report["status"],
            trigger=report.get("trigger"),
            started_at=report.get("started_at"),
            finished_at=report.get("finished_at"),
            tables=report.get("tables") or {},
            rows_read=report.get("rows_read") or 0,
            rows_loaded=report.get("rows_loaded") or 0,
            rows_rejected=report.get("rows_rejected") or 0,
            seconds_total=(report.get("seconds") or {}).get("total", 0.0),
            error_code=error.get("code"),
            error_message=error.get("message"),
            models=[ModelSummary.of(model) for model in report.get("models") or []],
        )


class RunList(BaseModel):
    runs: list[RunSummary]


def _summaries(
    service: RunService, limit: int, pipeline: str | None, status: str | None
) -> list[RunSummary]:
    reports = RunLog(service.settings).recent(limit, pipeline=pipeline, status=status)
    return [RunSummary.of(report) for report in reports]


@router.get(
    "/runs",
    summary="Recent runs, newest first, from the run log in the destination",
    responses=ERROR_RESPONSES,
)
def list_runs(
    service: ServiceDep,
    limit: Limit = 50,
    pipeline: PipelineFilter = None,
    status: StatusFilter = None,
) -> RunList:
    return RunList(runs=_summaries(service, limit, pipeline or None, status))


@router.get(
    "/runs/{run_id}",
    summary="One run's full report",
    # the report as the run log stored it (not re-validated: an older ferry may have written it)
    response_model=None,
    responses={**ERROR_RESPONSES, 200: {"model": RunReportBody, "description": "the run's report"}},
)
def get_run(run_id: str, service: ServiceDep) -> dict[str, Any]:
    report = RunLog(service.settings).get(run_id)
    if report is None:
        raise RunNotFoundError(f"no run '{run_id}' in the run log")
    return report


@router.get(
    "/ui/runs",
    summary="Recent runs as an HTML page",
    response_class=HTMLResponse,
    responses=HTML_ROUTE_ERROR_RESPONSES,
)
def runs_page(
    service: ServiceDep,
    limit: Limit = 50,
    pipeline: PipelineFilter = None,
    status: FormStatusFilter = None,
) -> HTMLResponse:
    runs = _summaries(service, limit, pipeline or None, status or None)
    return HTMLResponse(
        render_runs_page(runs, pipeline=pipeline, status=status),
        headers={"Content-Security-Policy": PAGE_CSP},
    )


# --- the page (pure) ------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;
color:#1f2328;background:#f6f8fa}
h1{font-size:20px;margin:0 0 4px}
p.sub{color:#59636e;margin:0 0 16px}
form{margin:0 0 12px;display:flex;gap:8px;align-items:center}
input,select,button{font:inherit;padding:4px 8px;border:1px solid #d1d9e0;border-radius:6px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d1d9e0}
th,td{padding:6px 10px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600;white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums}
.msg{display:block;max-width:360px;font-size:12px;color:#59636e;overflow-wrap:anywhere}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;color:#59636e;white-space:nowrap}
.nw{white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.succeeded{background:#dafbe1;color:#1a7f37}
.failed{background:#ffebe9;color:#cf222e}
.skipped{background:#eaeef2;color:#59636e}
.err{color:#cf222e}
.empty{padding:24px;text-align:center;color:#59636e}
tr.models td{padding:2px 10px 8px 32px;font-size:12px;color:#59636e}
tr.models .badge{font-size:11px}
"""

PAGE_CSP = page_csp(_STYLE)
"""The page's only asset is its inline style: the CSP allows exactly that."""

_HEADERS = (
    ("Started (UTC)", ""),
    ("Pipeline", ""),
    ("Status", ""),
    ("Trigger", ""),
    ("Rows loaded", "num"),
    ("Rejected", "num"),
    ("Tables", ""),
    ("Duration", "num"),
    ("Error", ""),
)
MESSAGE_CHARS = 200


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _row(run: RunSummary) -> str:
    tables = ", ".join(
        f'<span class="nw">{escape(name)}: {rows}</span>' for name, rows in run.tables.items()
    )
    error = ""
    if run.error_code:
        message = run.error_message or ""
        short = message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS] + "..."
        error = (
            f'<span class="err" title="{escape(message)}">{escape(run.error_code)}</span>'
            f'<span class="msg">{escape(short)}</span>'
        )
    cells = [
        f"<td>{escape(_when(run.started_at))}<br><code>{escape(run.run_id)}</code></td>",
        f"<td>{escape(run.pipeline)}</td>",
        f'<td><span class="badge {escape(run.status)}">{escape(run.status)}</span></td>',
        f"<td>{escape(run.trigger or '')}</td>",
        f'<td class="num">{run.rows_loaded}</td>',
        f'<td class="num">{run.rows_rejected}</td>',
        f"<td>{tables or '&ndash;'}</td>",
        f'<td class="num">{escape(_duration(run.seconds_total))}</td>',
        f"<td>{error}</td>",
    ]
    row = f'<tr class="run" data-run-id="{escape(run.run_id)}">{"".join(cells)}</tr>'
    return row + _models_row(run)


def _models_row(run: RunSummary) -> str:
    """The run's SQL models, on a row of their own under it."""
    if not run.models:
        return ""
    models = " &middot; ".join(
        f'<span class="nw model">{escape(model.name)} '
        f'<span class="badge {escape(model.status)}">{escape(model.status)}</span>'
        + (f" {model.rows} rows" if model.rows is not None else "")
        + f" in {escape(_duration(model.seconds))}"
        + (f' <span class="err">{escape(model.error_code)}</span>' if model.error_code else "")
        + "</span>"
        for model in run.models
    )
    return (
        f'<tr class="models" data-run-id="{escape(run.run_id)}">'
        f'<td colspan="{len(_HEADERS)}">models: {models}</td></tr>'
    )


def render_runs_page(
    runs: list[RunSummary], pipeline: str | None = None, status: str | None = None
) -> str:
    """A self-contained page (inline CSS, no scripts, no external assets); all text escaped."""
    counts = {
        name: sum(1 for r in runs if r.status == name)
        for name in ("succeeded", "failed", "skipped")
    }
    options = "".join(
        f'<option value="{value}"{" selected" if value == (status or "") else ""}>{label}</option>'
        for value, label in (
            ("", "any status"),
            ("succeeded", "succeeded"),
            ("failed", "failed"),
            ("skipped", "skipped"),
        )
    )
    head = "".join(
        f'<th class="{kind}">{escape(name)}</th>' if kind else f"<th>{escape(name)}</th>"
        for name, kind in _HEADERS
    )
    if runs:
        body = "".join(_row(run) for run in runs)
    else:
        body = f'<tr><td class="empty" colspan="{len(_HEADERS)}">No runs recorded yet.</td></tr>'
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>ferry runs</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>ferry runs</h1>"
        f'<p class="sub">{len(runs)} most recent run(s): {counts["succeeded"]} succeeded, '
        f"{counts['failed']} failed, {counts['skipped']} skipped (nothing new). "
        "Full reports: <code>GET /runs/&lt;run id&gt;</code>.</p>"
        '<form method="get" action="">'
        f'<input name="pipeline" placeholder="pipeline" value="{escape(pipeline or "")}">'
        f'<select name="status">{options}</select><button type="submit">Filter</button></form>'
        f'<table id="runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        "</body></html>\n"
    )

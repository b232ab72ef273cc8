"""ferry's command line (the `ferry` command; main.py calls it too): run, load, init, build,
drain, replay, validate, schema, gc, serve.

Exit codes: 0 success; 1 retriable failure (network, 5xx, quota: run again);
2 terminal failure (bad config or data: fix it first; FERRY_TERMINAL_EXIT_CODE overrides).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import (
    EXIT_OK,
    EXIT_RETRIABLE,
    EXIT_TERMINAL,
    FerryError,
    RequestError,
    outcome_of,
)

if TYPE_CHECKING:
    from app.ops.service import Catalog, RunReport, RunRequest
    from core.settings import Settings

log = logging.getLogger("ferry")


PIPELINES_HELP = (
    "the pipelines file (default: $FERRY_PIPELINES_FILE; else ./pipelines.yaml when it "
    "exists; else the demo file examples/pipelines.yaml of the ferry installation). A "
    "relative path is relative to the current directory."
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    # --pipelines is accepted before the command and after it (`ferry run x --pipelines f`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--pipelines", metavar="FILE", type=Path, default=argparse.SUPPRESS, help=PIPELINES_HELP
    )
    report = argparse.ArgumentParser(add_help=False)
    report.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the JSON run report even on a terminal (it is printed whenever stdout "
        "is not a terminal)",
    )
    parser = argparse.ArgumentParser(
        prog="ferry",
        description="ferry: load files and HTTP APIs into BigQuery (or DuckDB locally).",
        epilog="Exit codes: 0 success; 1 retriable failure (run again); 2 terminal failure "
        "(fix the config or the data; FERRY_TERMINAL_EXIT_CODE overrides). Settings come "
        "from FERRY_* environment variables (README, 'Settings').",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, *extra: argparse.ArgumentParser) -> Any:
        return commands.add_parser(
            name, help=help_text, description=help_text, parents=[common, *extra]
        )

    run = command("run", "run one pipeline to completion", report)
    run.add_argument("pipeline", help="the pipeline's name in the pipelines file")
    run.add_argument("--source", help="narrow the pipeline's source to this URI or glob")
    run.add_argument("--generation", type=int, help="load this object generation")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="API query parameter override (repeatable)",
    )
    load = command(
        "load",
        "load a local or gs:// file, folder or glob into a table, no pipelines file needed "
        "(append; loading the same file again changes nothing)",
        report,
    )
    load.add_argument(
        "path", nargs="+", metavar="PATH_OR_GLOB", help="e.g. data/*.csv or 'gs://b/x/*.jsonl'"
    )
    load.add_argument("--table", required=True, help="the destination table")
    load.add_argument(
        "--destination",
        choices=["duckdb", "bigquery"],
        help="default: $FERRY_DESTINATION (BigQuery when FERRY_BIGQUERY_PROJECT is set, "
        "else the embedded DuckDB file)",
    )
    init = command(
        "init",
        "write a commented pipelines file for a file, with its columns inferred from a sample",
    )
    init.add_argument("path", metavar="PATH_OR_GLOB", help="the file (or glob) to describe")
    init.add_argument("--table", help="the destination table (default: from the file name)")
    init.add_argument(
        "--output",
        type=Path,
        default=Path("pipelines.yaml"),
        help="where to write it (default: ./pipelines.yaml; an existing file is kept)",
    )
    drain = command("drain", "pull waiting GCS notifications and load them in one run per pipeline")
    drain.add_argument("--subscription", required=True, help="projects/P/subscriptions/S (pull)")
    drain.add_argument("--max-objects", type=int, default=5000, help="objects per drain")
    drain.add_argument("--max-bytes", type=int, default=50 << 30, help="object bytes per drain")
    drain.add_argument(
        "--lease-seconds", type=int, default=120, help="ack deadline held while loading"
    )
    replay = command(
        "replay", "re-load a pipeline's raw-zone inputs archived on a range of days", report
    )
    replay.add_argument("pipeline")
    replay.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD")
    replay.add_argument("--to", dest="last", help="YYYY-MM-DD (default: --from)")
    build = command(
        "build", "build SQL models (and those downstream of them) now; none named: all", report
    )
    build.add_argument("models", nargs="*", metavar="MODEL")
    build.add_argument(
        "--full-refresh",
        action="store_true",
        help="incremental models read all their upstream rows, not only new loads'",
    )
    validate = command(
        "validate", "check the pipelines file (every problem at once) and list what it declares"
    )
    validate.add_argument(
        "file", nargs="?", type=Path, metavar="FILE", help="the file to check (or --pipelines)"
    )
    command("schema", "print the JSON Schema of the pipelines file (for editors)")
    command(
        "gc", "drop staging datasets left by killed runs (older than FERRY_STAGING_MAX_AGE_HOURS)"
    )
    serve = command("serve", "serve the HTTP API (the Cloud Run service)")
    serve.add_argument(
        "--host",
        help="address to bind (default: 0.0.0.0 when $PORT is set, as on Cloud Run; else "
        "127.0.0.1, this machine only)",
    )
    serve.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 8080)")
    args = parser.parse_args(argv)
    if args.command == "validate" and args.file is not None:
        args.pipelines = args.file
    return args


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RequestError(f"--param '{pair}' must look like KEY=VALUE")
        params[key] = value
    return params


def shard_from_env() -> tuple[int, int]:
    """Cloud Run Jobs tell each task its index and the task count."""
    try:
        index = int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0"))
        count = int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1"))
    except ValueError:
        raise RequestError("CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT must be integers") from None
    if count < 1 or not 0 <= index < count:
        raise RequestError(f"task index {index} is outside task count {count}")
    return index, count


def command_run(args: argparse.Namespace, settings: Settings) -> int:
    from app.ops.service import RunRequest, load_catalog

    catalog = load_catalog(settings.pipelines_file)
    index, count = shard_from_env()
    request = RunRequest(
        pipeline=args.pipeline,
        source_uri=args.source,
        generation=args.generation,
        params=parse_params(args.param),
        shard_index=index,
        shard_count=count,
        trigger="job" if "CLOUD_RUN_JOB" in os.environ else "cli",
        **execution_from_env(),
    )
    return execute(request, settings, catalog, as_json=_wants_json(args))


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def execution_from_env() -> dict[str, Any]:
    """Cloud Run Jobs name the execution and the task's attempt; kept in the run log."""
    attempt = os.environ.get("CLOUD_RUN_TASK_ATTEMPT", "")
    return {
        "execution": os.environ.get("CLOUD_RUN_EXECUTION") or None,
        "task_attempt": int(attempt) if attempt.isdigit() else None,
    }


def execute(
    request: RunRequest, settings: Settings, catalog: Catalog, *, as_json: bool = False
) -> int:
    """Run, record the run (history, event), print its report: a short summary for a person
    on a terminal, the JSON report otherwise (or with --json)."""
    from app.edges.progress import TerminalProgress
    from app.ops.service import RunService

    service = RunService(settings=settings, catalog=catalog)
    # abandoned on SIGTERM at its next checkpoint, before its load commits (nothing visible):
    # the grace period is short and the retried task is the run that counts, as in the service
    service.stop_on_sigterm()
    with TerminalProgress.for_stderr() as progress:
        report = service.run(request, progress=progress)
    log.info(report.summary(), extra={"run_report": report.to_dict()})
    if as_json or not sys.stdout.isatty():
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        spec = catalog.pipelines.get(request.pipeline)
        table = spec.destination.table if spec else None
        sys.stdout.write(human_summary(report, settings, table))
    return EXIT_OK


def command_build(args: argparse.Namespace, settings: Settings) -> int:
    from app.ops.service import MODELS_RUN, RunRequest, load_catalog

    catalog = load_catalog(settings.pipelines_file)
    request = RunRequest(
        pipeline=MODELS_RUN,
        models=tuple(args.models),
        full_refresh=args.full_refresh,
        trigger="job" if "CLOUD_RUN_JOB" in os.environ else "cli",
        **execution_from_env(),
    )
    return execute(request, settings, catalog, as_json=_wants_json(args))


def command_drain(args: argparse.Namespace, settings: Settings) -> int:
    from app.edges.drain import DrainLimits, drain
    from app.ops.service import RunService

    limits = DrainLimits(
        max_objects=args.max_objects, max_bytes=args.max_bytes, lease_seconds=args.lease_seconds
    )
    # each run goes through the ops wrapper (recorded and published before its messages are
    # acked); SIGTERM (task timeout, cancel) abandons the run in flight and nacks its messages
    service = RunService.from_settings(settings)
    service.stop_on_sigterm()
    report = drain(args.subscription, service, limits)
    log.info(
        "drain: %s messages, %s objects, %s runs, %s acked, %s nacked, %s dead-lettered",
        report.messages,
        report.objects,
        len(report.runs),
        report.acked,
        report.nacked,
        report.dead_lettered,
        extra={"drain_report": report.to_dict()},
    )
    sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    # nacked messages come back by themselves; a non-zero exit also makes the job retry
    return EXIT_RETRIABLE if report.nacked else EXIT_OK


def command_replay(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import date

    from app.ops.service import RunRequest, load_catalog

    try:
        first = date.fromisoformat(args.first)
        last = date.fromisoformat(args.last or args.first)
    except ValueError as error:
        raise RequestError(f"--from/--to must be YYYY-MM-DD: {error}") from None
    catalog = load_catalog(settings.pipelines_file)
    request = RunRequest(pipeline=args.pipeline, replay=(first, last), trigger="replay")
    return execute(request, settings, catalog, as_json=_wants_json(args))


def command_validate(settings: Settings) -> int:
    from app.ops.service import load_catalog

    catalog = load_catalog(settings.pipelines_file)
    for spec in catalog.pipelines.values():
        sys.stdout.write(
            f"{spec.name}: {spec.source.kind} -> {spec.destination.table} "
            f"({spec.destination.write_disposition})\n"
        )
    models = catalog.models
    for name in models.graph.order:
        reads = ", ".join(sorted(models.queries[name].upstream))
        sys.stdout.write(f"model {name}: {models.specs[name].materialization} <- {reads}\n")
    return EXIT_OK


def command_gc(settings: Settings) -> int:
    from app.ops.service import sweep_staging

    dropped = sweep_staging(settings)
    sys.stdout.write(json.dumps({"dropped_staging_datasets": dropped}) + "\n")
    return EXIT_OK


def command_load(args: argparse.Namespace, settings: Settings) -> int:
    """`ferry load data/*.csv --table t`: a one-pipeline catalog built in memory, run by the
    normal runner (readers, types, lineage columns, the exactly-once ledger)."""
    from app.ops.service import RunRequest
    from app.run.quickstart import load_catalog_for

    catalog, objects = load_catalog_for(args.path, args.table, Path.cwd())
    (name,) = catalog.pipelines
    request = RunRequest(pipeline=name, objects=objects, trigger="cli", **execution_from_env())
    return execute(request, settings, catalog, as_json=_wants_json(args))


def command_init(args: argparse.Namespace, settings: Settings) -> int:
    from app.run.quickstart import pipelines_yaml, sample_columns

    output: Path = args.output
    if output.exists():
        raise RequestError(f"{output} exists already; pass --output to write another file")
    sampled, columns = sample_columns(args.path, settings, Path.cwd())
    table = args.table or _table_from(sampled)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        pipelines_yaml(args.path, table, columns, sampled, output.parent), encoding="utf-8"
    )
    sys.stdout.write(
        f"wrote {output}: pipeline '{table}' with {len(columns)} column(s) inferred from "
        f"{sampled}\n  check it: ferry validate {output}\n"
        f"  run it:   ferry --pipelines {output} run {_pipeline_of(table)}\n"
    )
    return EXIT_OK


def _table_from(uri: str) -> str:
    import re

    stem = uri.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem).strip("_").lower()
    return name if name and not name[0].isdigit() else f"t_{name}"


def _pipeline_of(table: str) -> str:
    from app.run.quickstart import pipeline_name

    return pipeline_name(table)


def command_schema() -> int:
    from core.spec import PipelinesFile

    schema = PipelinesFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ferry pipelines file"
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return EXIT_OK


def command_serve(args: argparse.Namespace, settings: Settings) -> int:
    from app.edges.server import serve

    port_env = os.environ.get("PORT")
    # Cloud Run sets $PORT and routes to the container: bind every address there; a local
    # `ferry serve` stays on this machine unless told otherwise
    host = args.host or ("0.0.0.0" if port_env else "127.0.0.1")  # noqa: S104
    port = args.port if args.port is not None else int(port_env or "8080")
    serve(host=host, port=port, settings=settings)
    return EXIT_OK


def human_summary(report: RunReport, settings: Settings, table: str | None = None) -> str:
    """What a person at a terminal wants after a run: the counts, where the data is, and a
    query to look at it."""
    lines = [
        f"{report.pipeline}: {report.status} in {report.seconds.get('total', 0.0):.1f}s "
        f"(run {report.run_id})",
        f"  rows:  {report.rows_read} read, {report.rows_filtered} filtered out, "
        f"{report.rows_rejected} rejected, {report.rows_loaded} loaded",
        f"  files: {report.files_loaded} loaded, {len(report.files) - report.files_loaded} "
        "skipped (already loaded)",
    ]
    for model in report.models:
        rows = f", {model.rows} rows" if model.rows is not None else ""
        lines.append(f"  model: {model.name} {model.status}{rows}")
    from app.ops.service import where_it_landed

    tables = list(report.tables) or [m.name for m in report.models] or ([table] if table else [])
    lines += [f"  {line}" for line in where_it_landed(settings, tables[:3])]
    lines.append("  (the full JSON report: add --json)")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """The `ferry` command (and `python main.py`)."""
    from app.edges.logs import configure_logging
    from core.settings import load_settings

    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "schema":
        return command_schema()
    overrides: dict[str, Any] = {}
    if getattr(args, "pipelines", None) is not None:
        overrides["pipelines_file"] = args.pipelines
    if getattr(args, "destination", None):
        overrides["destination"] = args.destination
    try:
        settings = load_settings(**overrides)
    except FerryError as error:  # no settings, so no configured format: log it plainly
        configure_logging("auto", "INFO")
        return _failed(error, _terminal_exit_code_alone())
    configure_logging(settings.log_format, settings.log_level)
    handlers = {
        "run": command_run,
        "load": command_load,
        "init": command_init,
        "build": command_build,
        "drain": command_drain,
        "replay": command_replay,
        "serve": command_serve,
    }
    try:
        if args.command == "validate":
            return command_validate(settings)
        if args.command == "gc":
            return command_gc(settings)
        return handlers[args.command](args, settings)
    except FerryError as error:
        return _failed(error, settings.terminal_exit_code, settings, as_json=_wants_json(args))


def _failed(
    error: FerryError,
    terminal_exit_code: int,
    settings: Settings | None = None,
    *,
    as_json: bool = False,
) -> int:
    """Log the error, print the failed run's report (if a run started; a summary on a
    terminal), pick the exit code."""
    from app.ops.service import RunReport

    log.error(
        "%s (%s, %s)", error, error.code, error.recovery.value, extra={"error": error.to_dict()}
    )
    report = error.report
    if report is not None and (as_json or not sys.stdout.isatty()):
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    elif isinstance(report, RunReport) and settings is not None:
        sys.stdout.write(human_summary(report, settings))
    outcome = outcome_of(error)
    return terminal_exit_code if outcome.exit_code == EXIT_TERMINAL else outcome.exit_code


def _terminal_exit_code_alone() -> int:
    """FERRY_TERMINAL_EXIT_CODE when the other settings are invalid: a Cloud Run Job told to
    exit 0 on terminal failures must not be retried for a broken config either."""
    from pydantic import ValidationError

    from core.settings import JobExit

    try:
        return JobExit().terminal_exit_code
    except ValidationError:
        return EXIT_TERMINAL

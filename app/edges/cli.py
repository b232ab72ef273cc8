"""ferry's command line, called by main.py: run, build, drain, replay, validate, gc, serve.

Exit codes: 0 success; 1 retriable failure (network, 5xx, quota: run again);
2 terminal failure (bad config or data: fix it first; FERRY_TERMINAL_EXIT_CODE overrides).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from core.errors import (
    EXIT_OK,
    EXIT_TERMINAL,
    FerryError,
    RequestError,
    ShuttingDownError,
    outcome_of,
)

if TYPE_CHECKING:
    from app.run.catalog import Catalog
    from app.run.report import RunReport
    from app.run.request import ProgressCallback, RunRequest
    from core.settings import Settings

log = logging.getLogger("ferry")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ferry", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one pipeline to completion")
    run.add_argument("pipeline")
    run.add_argument("--source", help="narrow the pipeline's source to this URI or glob")
    run.add_argument("--generation", type=int, help="load this object generation")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="API query parameter override (repeatable)",
    )
    drain = commands.add_parser(
        "drain", help="pull waiting GCS notifications and load them in one run per pipeline"
    )
    drain.add_argument("--subscription", required=True, help="projects/P/subscriptions/S (pull)")
    drain.add_argument("--max-objects", type=int, default=5000, help="objects per drain")
    drain.add_argument("--max-bytes", type=int, default=50 << 30, help="object bytes per drain")
    drain.add_argument(
        "--lease-seconds", type=int, default=120, help="ack deadline held while loading"
    )
    replay = commands.add_parser(
        "replay", help="re-load a pipeline's raw-zone inputs archived on a range of days"
    )
    replay.add_argument("pipeline")
    replay.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD")
    replay.add_argument("--to", dest="last", help="YYYY-MM-DD (default: --from)")
    build = commands.add_parser(
        "build", help="build SQL models (and those downstream of them) now; none named: all"
    )
    build.add_argument("models", nargs="*", metavar="MODEL")
    commands.add_parser("validate", help="validate the pipelines file and list pipelines")
    commands.add_parser(
        "gc",
        help="drop staging datasets left by killed runs (older than FERRY_STAGING_MAX_AGE_HOURS)",
    )
    serve = commands.add_parser("serve", help="serve HTTP on $PORT (Cloud Run service)")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - Cloud Run routes to the container
    return parser.parse_args(argv)


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
    from app.run.catalog import load_catalog
    from app.run.request import RunRequest

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
    return execute(request, settings, catalog)


def execution_from_env() -> dict[str, Any]:
    """Cloud Run Jobs name the execution and the task's attempt; kept in the run log."""
    attempt = os.environ.get("CLOUD_RUN_TASK_ATTEMPT", "")
    return {
        "execution": os.environ.get("CLOUD_RUN_EXECUTION") or None,
        "task_attempt": int(attempt) if attempt.isdigit() else None,
    }


def execute(request: RunRequest, settings: Settings, catalog: Catalog) -> int:
    """Run, record the run (history, event), print its report."""
    from app.edges.progress import TerminalProgress
    from app.ops.run_events import run_and_tell
    from app.run.runner import run

    stop = StopOnSigterm.install()
    with TerminalProgress.for_stderr() as progress:
        # abandoned on SIGTERM: the grace period is short and the retried task is the run
        # that counts, as in the service
        report = run_and_tell(
            settings,
            lambda: run(request, settings, catalog, progress=stop.checking(progress)),
            silent=stop.requested.is_set,
        )
    log.info(report.summary(), extra={"run_report": report.to_dict()})
    sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    return EXIT_OK


def command_build(args: argparse.Namespace, settings: Settings) -> int:
    from app.run.catalog import load_catalog
    from app.run.request import MODELS_RUN, RunRequest

    catalog = load_catalog(settings.pipelines_file)
    request = RunRequest(
        pipeline=MODELS_RUN,
        models=tuple(args.models),
        trigger="job" if "CLOUD_RUN_JOB" in os.environ else "cli",
        **execution_from_env(),
    )
    return execute(request, settings, catalog)


class StopOnSigterm:
    """Job mode: Cloud Run sends SIGTERM on task timeout and on cancel. The run is abandoned
    at its next batch or before its load commits (nothing visible), like the service does;
    a load already committing finishes."""

    def __init__(self) -> None:
        self.requested = threading.Event()

    @classmethod
    def install(cls) -> StopOnSigterm:
        stop = cls()

        def handle(signum: int, frame: FrameType | None) -> None:
            log.warning("SIGTERM: abandoning the run at its next checkpoint")
            stop.requested.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handle)
        return stop

    def checking(self, progress: ProgressCallback) -> ProgressCallback:
        def checkpoint(report: RunReport) -> None:
            if self.requested.is_set():
                raise ShuttingDownError(
                    "SIGTERM: run abandoned before its load committed (nothing is visible); "
                    "the task's retry will load it",
                    pipeline=report.pipeline,
                    run_id=report.run_id,
                )
            progress(report)

        return checkpoint


def command_drain(args: argparse.Namespace, settings: Settings) -> int:
    from app.edges.drain import DrainLimits, drain
    from app.run.catalog import load_catalog
    from core.errors import EXIT_RETRIABLE

    catalog = load_catalog(settings.pipelines_file)
    limits = DrainLimits(
        max_objects=args.max_objects, max_bytes=args.max_bytes, lease_seconds=args.lease_seconds
    )
    # each run is recorded and published by drain itself, before its messages are acked;
    # SIGTERM (task timeout, cancel) abandons the run in flight and nacks its messages
    stop = StopOnSigterm.install()
    report = drain(
        args.subscription, settings, catalog, limits, progress=stop.checking(lambda _: None)
    )
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

    from app.run.catalog import load_catalog
    from app.run.request import RunRequest

    try:
        first = date.fromisoformat(args.first)
        last = date.fromisoformat(args.last or args.first)
    except ValueError as error:
        raise RequestError(f"--from/--to must be YYYY-MM-DD: {error}") from None
    catalog = load_catalog(settings.pipelines_file)
    request = RunRequest(pipeline=args.pipeline, replay=(first, last), trigger="replay")
    return execute(request, settings, catalog)


def command_validate(settings: Settings) -> int:
    from app.run.catalog import load_catalog

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
    from app.destinations.staging import sweep_now

    dropped = sweep_now(settings)
    sys.stdout.write(json.dumps({"dropped_staging_datasets": dropped}) + "\n")
    return EXIT_OK


def command_serve(args: argparse.Namespace, settings: Settings) -> int:
    from app.edges.server import serve

    serve(host=args.host, port=int(os.environ.get("PORT", "8080")), settings=settings)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    from app.edges.logs import configure_logging
    from core.settings import load_settings

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
    except FerryError as error:  # no settings, so no configured format: log it plainly
        configure_logging("auto", "INFO")
        return _failed(error, _terminal_exit_code_alone())
    configure_logging(settings.log_format, settings.log_level)
    try:
        if args.command == "run":
            return command_run(args, settings)
        if args.command == "validate":
            return command_validate(settings)
        if args.command == "build":
            return command_build(args, settings)
        if args.command == "drain":
            return command_drain(args, settings)
        if args.command == "replay":
            return command_replay(args, settings)
        if args.command == "gc":
            return command_gc(settings)
        return command_serve(args, settings)
    except FerryError as error:
        return _failed(error, settings.terminal_exit_code)


def _failed(error: FerryError, terminal_exit_code: int) -> int:
    """Log the error, print the failed run's report (if a run started), pick the exit code."""
    log.error(
        "%s (%s, %s)", error, error.code, error.recovery.value, extra={"error": error.to_dict()}
    )
    if error.report is not None:
        sys.stdout.write(json.dumps(error.report.to_dict(), indent=2) + "\n")
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

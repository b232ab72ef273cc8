"""`python -m bench`: generate the data if missing, run every path in its own process, report.

Examples:
    python -m bench --quick                          # 1M CSV on every path + small files
    python -m bench --sizes 1M,5M --formats csv      # all paths on 1M and 5M CSV
    python -m bench                                  # everything (1M, 5M, 20M; all formats)
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import report
from bench.generate import (
    COLUMN_TYPES,
    FORMATS,
    SMALL_FILE_ROWS,
    SMALL_FILES,
    Size,
    ensure_small_files,
    ensure_table,
    parse_size,
    small_dir,
    table_path,
)
from bench.measure import REPO, cold_start, run_child
from bench.paths import Job

TABLE_PATHS = ("limit", "dlt_fs", "naive", "ferry", "ferry_bq")
EXTRA_PATHS = ("small", "cold_start")
ALL_PATHS = TABLE_PATHS + EXTRA_PATHS
DICT_PEERS = ("dlt_fs", "naive")
"""Peers that turn every row into a Python dict: they get --peer-max-rows at most."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,5M,20M", help="comma-separated, e.g. 1M,5M")
    parser.add_argument("--formats", default=",".join(FORMATS), help="csv,csv.gz,jsonl,parquet")
    parser.add_argument(
        "--paths",
        default="all",
        help=f"all, or a comma-separated subset of {','.join(ALL_PATHS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="preset: --sizes 1M --formats csv --paths all"
    )
    parser.add_argument(
        "--peer-max-rows",
        type=lambda text: parse_size(text).rows,
        default=1_000_000,
        help="largest size the dict-row peers (dlt_fs, naive) run on (default 1M)",
    )
    parser.add_argument(
        "--peer-formats",
        default="csv",
        help="formats the dict-row peers run on (default csv; 'all' for every format)",
    )
    parser.add_argument(
        "--peer-loader-format",
        default="parquet",
        choices=["parquet", "insert_values", "jsonl"],
        help="dlt peers' loader file format (dlt's DuckDB default, insert_values, is ~30x slower)",
    )
    parser.add_argument("--data-dir", type=Path, default=REPO / "bench" / "data")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.formats, args.paths = "1M", "csv", "all"
    args.size_list = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    args.format_list = [f.strip() for f in args.formats.split(",") if f.strip()]
    args.peer_format_list = (
        list(FORMATS) if args.peer_formats == "all" else args.peer_formats.split(",")
    )
    args.path_list = list(ALL_PATHS) if args.paths == "all" else args.paths.split(",")
    unknown = [f for f in args.format_list if f not in FORMATS] + [
        p for p in args.path_list if p not in ALL_PATHS
    ]
    if unknown:
        parser.error(f"unknown format/path: {', '.join(unknown)}")
    return args


def say(text: str) -> None:
    print(text, flush=True)


def _job(
    path: str, file_format: str, inputs: list[Path], glob: str, args: argparse.Namespace
) -> Job:
    return Job(
        path=path,
        file_format=file_format,
        inputs=[str(p.resolve()) for p in inputs],
        glob=glob,
        workdir=str(args.out_dir / "work" / f"{path}-{uuid.uuid4().hex[:8]}"),
        column_types=dict(COLUMN_TYPES),
        peer_loader_format=args.peer_loader_format,
    )


def _measure(job: Job, label: dict[str, Any], timeout_s: float, input_bytes: int) -> dict[str, Any]:
    say(f"  {job.path:<9} {job.file_format:<8} {label['size']:<6} ...")
    result = run_child(job, timeout_s)
    result.update(label, path=job.path, format=job.file_format, input_bytes=input_bytes)
    rows_per_s, _ = report.throughput(result)
    if result.get("ok"):
        say(
            f"    {result['seconds']:.2f} s, {rows_per_s or 0:,.0f} rows/s, "
            f"peak {result['peak_rss_mib']:.0f} MiB, loaded {result['rows_loaded']:,}"
            + (f" [{report.stages_line(result)}]" if result.get("stages") else "")
        )
    else:
        say(f"    {result.get('skipped') or 'FAILED: ' + str(result.get('error'))}")
    return result


@contextmanager
def _bigquery_emulator(wanted: bool) -> Iterator[Any]:
    if not wanted:
        yield None
        return
    from tests.emulators import run_bigquery_emulator

    with run_bigquery_emulator() as emulator:
        yield emulator


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    paths = args.path_list
    table_paths = [p for p in TABLE_PATHS if p in paths]
    one_million = Size("1M", 1_000_000)

    # data first, so generation time never lands inside a measurement
    for size in args.size_list:
        ensure_table(args.data_dir, size, args.format_list, say)
    if "ferry_bq" in paths and one_million not in args.size_list:
        ensure_table(args.data_dir, one_million, ["csv"], say)
    small_files = ensure_small_files(args.data_dir, say) if "small" in paths else []
    if args.generate_only:
        return 0

    results: list[dict[str, Any]] = []
    skipped_plan: list[str] = []
    for size in args.size_list:
        for file_format in args.format_list:
            file = table_path(args.data_dir, size, file_format)
            label = {"size": size.label, "rows": size.rows}
            for path in table_paths:
                if path == "ferry_bq":
                    continue
                if path in DICT_PEERS and (
                    size.rows > args.peer_max_rows or file_format not in args.peer_format_list
                ):
                    skipped_plan.append(f"{path} on {size.label} {file_format}")
                    continue
                job = _job(path, file_format, [file], str(file.resolve()), args)
                results.append(_measure(job, label, args.timeout, file.stat().st_size))

    small_results: list[dict[str, Any]] = []
    if small_files:
        say(f"small files: {SMALL_FILES} x {SMALL_FILE_ROWS} rows")
        glob = str((small_dir(args.data_dir) / "*.csv").resolve())
        small_bytes = sum(p.stat().st_size for p in small_files)
        rows = SMALL_FILES * SMALL_FILE_ROWS
        for path in ("ferry", "dlt_fs"):
            job = _job(path, "csv", small_files, glob, args)
            label = {"size": "small", "rows": rows}
            small_results.append(_measure(job, label, args.timeout, small_bytes))

    bq_result: dict[str, Any] | None = None
    with _bigquery_emulator("ferry_bq" in paths) as emulator:
        if emulator is not None:
            file = table_path(args.data_dir, one_million, "csv")
            job = _job("ferry_bq", "csv", [file], str(file.resolve()), args)
            job = Job(
                **{
                    **job.__dict__,
                    "emulator_endpoint": emulator.endpoint,
                    "bigquery_dataset": f"bench_{uuid.uuid4().hex[:8]}",
                }
            )
            label = {"size": one_million.label, "rows": one_million.rows}
            bq_result = _measure(job, label, args.timeout, file.stat().st_size)

    cold: dict[str, Any] | None = None
    if "cold_start" in paths:
        say("cold start: python main.py serve until GET /healthz is 200 (3 runs)")
        try:
            cold = cold_start()
        except RuntimeError as error:
            cold = {"error": str(error)}

    _print_report(results, small_results, bq_result, cold, skipped_plan, args.peer_loader_format)
    body = {
        "command": "python -m bench " + " ".join(argv),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "results": results,
        "ratios": report.ratios(results),
        "small_files": report.small_files_summary(
            small_results, results + small_results, SMALL_FILES
        ),
        "ferry_bigquery_emulator": bq_result,
        "cold_start": cold,
        "not_run": skipped_plan,
    }
    out = args.out_dir / "results.json"
    report.write_json(out, body)
    say(f"\nwrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


def _print_report(
    results: list[dict[str, Any]],
    small_results: list[dict[str, Any]],
    bq_result: dict[str, Any] | None,
    cold: dict[str, Any] | None,
    skipped_plan: list[str],
    args_loader: str,
) -> None:
    say(
        "\n== paths (seconds: the work only, imports excluded; peak MiB: the child's VmHWM; "
        f"dlt peers load {args_loader} files)"
    )
    say(report.table(results))
    if skipped_plan:
        say(
            "not run (dict-row peers are too slow; see --peer-max-rows, --peer-formats): "
            + "; ".join(skipped_plan)
        )
    say("\n== ratios (same run)")
    say(report.ratio_table(report.ratios(results)))
    ferry_stages = [r for r in results if r["path"] == "ferry" and r.get("ok")]
    if ferry_stages:
        say("\n== ferry stages (RunReport.seconds; extract excludes transform)")
        for result in ferry_stages:
            say(f"{result['format']:<8} {result['size']:<4} {report.stages_line(result)}")
    if small_results:
        say("\n== small files")
        summary = report.small_files_summary(small_results, results, SMALL_FILES)
        say(report.small_files_table(summary))
    if bq_result is not None:
        say("\n== ferry -> BigQuery emulator, 1M CSV (worker-side seconds per stage)")
        if bq_result.get("ok"):
            say(
                f"total {bq_result['seconds']:.2f} s, loaded {bq_result['rows_loaded']:,}, peak "
                f"{bq_result['peak_rss_mib']:.0f} MiB: {report.stages_line(bq_result)}"
            )
        else:
            say("FAILED: " + str(bq_result.get("error")))
    if cold is not None:
        say("\n== cold start (spawn `python main.py serve` -> GET /healthz 200)")
        if "error" in cold:
            say("FAILED: " + cold["error"])
        else:
            say(f"median {cold['median_seconds']:.2f} s, samples {cold['samples']}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

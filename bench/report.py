"""The results table, the same-run ratios, and results.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 1 << 20


def throughput(result: dict[str, Any]) -> tuple[float | None, float | None]:
    """(rows/s, MB/s of input file size) or (None, None) when the path did not finish."""
    seconds = result.get("seconds")
    if not result.get("ok") or not seconds:
        return None, None
    return result["rows"] / seconds, result["input_bytes"] / 1e6 / seconds


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'path':<9} {'format':<8} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'MB/s':>7} "
        f"{'peak MiB':>8} {'loaded':>10}  notes"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        rows_per_s, mb_per_s = throughput(result)
        note = result.get("note") or ""
        load = max(result.get("loadavg") or [0.0])
        if load > (result.get("cpus") or 1) + 0.5:
            note = f"{note} (busy machine: load {load:.1f})".strip()
        if not result.get("ok"):
            note = result.get("skipped") or ("FAILED: " + str(result.get("error", ""))[:300])
        lines.append(
            f"{result['path']:<9} {result['format']:<8} {result['rows']:>10,} "
            f"{_fmt(result.get('seconds'), '.2f'):>8} {_fmt(rows_per_s, ',.0f'):>10} "
            f"{_fmt(mb_per_s, '.1f'):>7} {_fmt(result.get('peak_rss_mib'), '.0f'):>8} "
            f"{result.get('rows_loaded', '-'):>10}  {note}"
        )
    return "\n".join(lines)


def _find(results: list[dict[str, Any]], path: str, fmt: str, rows: int) -> dict[str, Any] | None:
    for result in results:
        if (result["path"], result["format"], result["rows"]) == (path, fmt, rows):
            return result if result.get("ok") and result.get("seconds") else None
    return None


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ferry vs limit (throughput) and ferry vs dlt filesystem (throughput, memory)."""
    out = []
    for ferry in results:
        if ferry["path"] != "ferry" or not ferry.get("ok"):
            continue
        key = (ferry["format"], ferry["rows"])
        row: dict[str, Any] = {"format": key[0], "rows": key[1]}
        limit = _find(results, "limit", *key)
        peer = _find(results, "dlt_fs", *key)
        naive = _find(results, "naive", *key)
        if limit:
            row["ferry_vs_limit_throughput"] = round(limit["seconds"] / ferry["seconds"], 3)
        if peer:
            row["ferry_vs_dlt_fs_throughput"] = round(peer["seconds"] / ferry["seconds"], 2)
            row["ferry_vs_dlt_fs_memory"] = round(ferry["peak_rss_mib"] / peer["peak_rss_mib"], 2)
        if naive:
            row["ferry_vs_naive_throughput"] = round(naive["seconds"] / ferry["seconds"], 2)
        out.append(row)
    return out


def ratio_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'format':<8} {'rows':>10} {'ferry/limit thr':>16} {'ferry/dlt_fs thr':>17} "
        f"{'ferry/dlt_fs mem':>17} {'ferry/naive thr':>16}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['format']:<8} {row['rows']:>10,} "
            f"{_fmt(row.get('ferry_vs_limit_throughput'), '.3f'):>16} "
            f"{_fmt(row.get('ferry_vs_dlt_fs_throughput'), '.2f'):>17} "
            f"{_fmt(row.get('ferry_vs_dlt_fs_memory'), '.2f'):>17} "
            f"{_fmt(row.get('ferry_vs_naive_throughput'), '.2f'):>16}"
        )
    lines.append(
        "(throughput ratio > 1: ferry is faster; memory ratio < 1: ferry uses less peak RSS)"
    )
    return "\n".join(lines)


def small_files_summary(
    small: list[dict[str, Any]], results: list[dict[str, Any]], files: int
) -> list[dict[str, Any]]:
    """Per-file overhead: (time for N small files - time for one big file of equal rows) / N."""
    out = []
    for result in small:
        base = _find(results, result["path"], "csv", result["rows"])
        row: dict[str, Any] = {
            "path": result["path"],
            "files": files,
            "rows": result["rows"],
            "seconds": result.get("seconds"),
            "one_file_seconds": base["seconds"] if base else None,
            "load_ids": result.get("load_ids"),
            "load_jobs": result.get("load_jobs"),
            "peak_rss_mib": result.get("peak_rss_mib"),
            "error": None if result.get("ok") else result.get("error"),
        }
        if base and result.get("ok"):
            row["per_file_overhead_ms"] = round(
                (result["seconds"] - base["seconds"]) / files * 1000, 2
            )
        out.append(row)
    return out


def small_files_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        if row["error"]:
            lines.append(f"{row['path']:<7} FAILED: {row['error'][:300]}")
            continue
        overhead = row.get("per_file_overhead_ms")
        lines.append(
            f"{row['path']:<7} {row['files']} files x {row['rows'] // row['files']} rows: "
            f"{_fmt(row['seconds'], '.2f')} s (one file of {row['rows']:,} rows: "
            f"{_fmt(row['one_file_seconds'], '.2f')} s) -> per-file overhead "
            f"{_fmt(overhead, '.1f')} ms; peak {_fmt(row['peak_rss_mib'], '.0f')} MiB; "
            f"load ids {row['load_ids']}, load jobs {row['load_jobs']}"
        )
    return "\n".join(lines)


def stages_line(result: dict[str, Any]) -> str:
    stages = result.get("stages") or {}
    return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in stages.items())


def write_json(path: Path, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")


Printer = Callable[[str], None]

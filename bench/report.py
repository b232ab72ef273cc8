"""The results tables, the same-run ratios, and results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LABELS = {
    "limit": "DuckDB CTAS (the limit)",
    "dlt_fs": "dlt filesystem | read_csv_duckdb",
    "recipe": "dlt + DuckDB reader -> Arrow",
    "sling": "Sling -> DuckDB",
    "ferry_plain": "ferry, no transform",
    "ferry": "ferry, rename/cast/filter/derive",
}


def throughput(result: dict[str, Any]) -> tuple[float | None, float | None]:
    """(rows/s, MB/s of input file size) over the whole process, or (None, None)."""
    seconds = result.get("seconds")
    if not result.get("ok") or not seconds:
        return None, None
    return result["rows"] / seconds, result["input_bytes"] / 1e6 / seconds


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'path':<34} {'format':<8} {'rows':>10} {'seconds':>8} {'work s':>7} {'cpu s':>6} "
        f"{'rows/s':>9} "
        f"{'MB/s':>6} {'peak MiB':>8} {'loaded':>10}  notes"
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
            f"{LABELS.get(result['path'], result['path']):<34} {result['format']:<8} "
            f"{result['rows']:>10,} {fmt(result.get('seconds'), '.2f'):>8} "
            f"{fmt(result.get('work_seconds'), '.2f'):>7} "
            f"{fmt(result.get('cpu_seconds'), '.1f'):>6} "
            f"{fmt(rows_per_s, ',.0f'):>9} "
            f"{fmt(mb_per_s, '.1f'):>6} {fmt(result.get('peak_rss_mib'), '.0f'):>8} "
            f"{result.get('rows_loaded', '-'):>10}  {note}"
        )
    return "\n".join(lines)


def _find(results: list[dict[str, Any]], path: str, fmt_: str, rows: int) -> dict[str, Any] | None:
    for result in results:
        if (result["path"], result["format"], result["rows"]) == (path, fmt_, rows):
            return result if result.get("ok") and result.get("seconds") else None
    return None


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput of ferry (with and without the transform) over the limit and the peers."""
    out = []
    for ferry in results:
        if ferry["path"] not in ("ferry", "ferry_plain") or not ferry.get("ok"):
            continue
        key = (ferry["format"], ferry["rows"])
        row: dict[str, Any] = {"path": ferry["path"], "format": key[0], "rows": key[1]}
        for peer in ("limit", "recipe", "dlt_fs", "sling"):
            found = _find(results, peer, *key)
            if found:
                row[f"vs_{peer}"] = round(found["seconds"] / ferry["seconds"], 3)
        row["peak_rss_mib"] = ferry.get("peak_rss_mib")
        out.append(row)
    return out


def ratio_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'path':<12} {'format':<8} {'rows':>10} {'/limit':>7} {'/recipe':>8} {'/dlt_fs':>8} "
        f"{'/sling':>7} {'peak MiB':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['path']:<12} {row['format']:<8} {row['rows']:>10,} "
            f"{fmt(row.get('vs_limit'), '.2f'):>7} {fmt(row.get('vs_recipe'), '.2f'):>8} "
            f"{fmt(row.get('vs_dlt_fs'), '.2f'):>8} {fmt(row.get('vs_sling'), '.2f'):>7} "
            f"{fmt(row.get('peak_rss_mib'), '.0f'):>8}"
        )
    lines.append(
        "(ferry's throughput over the peer's, whole process: > 1 means ferry is faster; "
        "targets: /limit >= 0.75 with the transform at 5M, /recipe >= 1)"
    )
    return "\n".join(lines)


def small_files_summary(
    small: dict[str, Any], results: list[dict[str, Any]], files: int
) -> dict[str, Any]:
    """Per-file overhead: (time for N small files - time for one file of equal rows) / N."""
    base = _find(results, "ferry", "csv", small["rows"])
    row: dict[str, Any] = {
        "files": files,
        "rows": small["rows"],
        "seconds": small.get("seconds"),
        "one_file_seconds": base["seconds"] if base else None,
        "load_ids": small.get("load_ids"),
        "load_jobs": small.get("load_jobs"),
        "peak_rss_mib": small.get("peak_rss_mib"),
        "stages": small.get("stages"),
        "error": None if small.get("ok") else small.get("error"),
    }
    if base and small.get("ok"):
        row["per_file_overhead_ms"] = round((small["seconds"] - base["seconds"]) / files * 1000, 2)
    return row


def stages_line(result: dict[str, Any]) -> str:
    stages = result.get("stages") or {}
    return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in stages.items())


def full_report(results: list[dict[str, Any]], extras: dict[str, Any], loader: str) -> str:
    out = [
        "== paths (seconds and rows/s: the whole process, imports included; work s: inside "
        "the child after imports; cpu s: user+system CPU of the process tree; peak MiB: the "
        f"process tree's RSS; dlt_fs loads {loader} files)",
        table(results),
        "",
        "== ferry over the others (same run)",
        ratio_table(ratios(results)),
    ]
    ferry_stages = [r for r in results if r["path"].startswith("ferry") and r.get("ok")]
    if ferry_stages:
        out += ["", "== ferry stages (RunReport.seconds; extract excludes transform)"]
        for result in ferry_stages:
            out.append(
                f"{result['path']:<12} {result['format']:<8} {result['size']:<4} "
                f"{stages_line(result)}"
            )
    small = extras.get("small_files")
    if small:
        out += ["", "== small files (ferry with the transform)"]
        if small["error"]:
            out.append("FAILED: " + str(small["error"])[:300])
        else:
            out.append(
                f"{small['files']} files x {small['rows'] // small['files']} rows: "
                f"{fmt(small['seconds'], '.2f')} s (one file of {small['rows']:,} rows: "
                f"{fmt(small['one_file_seconds'], '.2f')} s) -> per-file overhead "
                f"{fmt(small.get('per_file_overhead_ms'), '.1f')} ms (target <= 5); peak "
                f"{fmt(small['peak_rss_mib'], '.0f')} MiB; load ids {small['load_ids']}, "
                f"load jobs {small['load_jobs']}"
            )
    push = extras.get("push")
    if push:
        out += ["", "== push latency (warm DuckDB instance, POST /runs, one small object each)"]
        out.append(
            f"median {fmt(push['median_seconds'], '.3f')} s (target <= 0.3), p90 "
            f"{fmt(push['p90_seconds'], '.3f')} s over {len(push['samples'])} requests; "
            f"statuses {push['statuses']}; server RSS after {push['server_rss_mib']} MiB"
        )
    push_bq = extras.get("push_bigquery")
    if push_bq:
        out += ["", "== push on the BigQuery emulator (HTTP calls to the BigQuery API, one object)"]
        if push_bq.get("ok"):
            calls = push_bq.get("api_calls") or {}
            out.append(
                f"{sum(calls.values())} calls: "
                + ", ".join(f"{kind} {n}" for kind, n in sorted(calls.items()))
                + " (target: load_job 1, query <= 2)"
            )
        else:
            out.append("FAILED: " + str(push_bq.get("error"))[:500])
    cold = extras.get("cold_start")
    if cold:
        out += ["", "== cold start (spawn `python main.py serve` -> GET /healthz 200)"]
        if "error" in cold:
            out.append("FAILED: " + cold["error"])
        else:
            out.append(
                f"median {cold['median_seconds']:.2f} s (target <= 1), samples "
                f"{cold['samples']}, RSS at ready {cold['rss_at_ready_mib']} MiB"
            )
    imports = extras.get("imports")
    if imports:
        out += ["", "== job process (`main.py run`, one small file)"]
        out.append(
            f"imports {imports['import_seconds']:.2f} s (target <= 1) of "
            f"{imports['process_seconds']:.2f} s; heaviest: {', '.join(imports['heaviest'])}"
            + ("" if imports["ok"] else f"; FAILED: {str(imports['error'])[:300]}")
        )
    return "\n".join(out)


def write_json(path: Path, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")

"""The results tables, the same-run ratios, and results.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
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
        f"{'path':<34} {'data':<6} {'format':<8} {'rows':>10} {'seconds':>8} {'work s':>7} "
        f"{'cpu s':>6} {'rows/s':>9} "
        f"{'MB/s':>6} {'peak MiB':>8} {'loaded':>10}  notes"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        rows_per_s, mb_per_s = throughput(result)
        note = result.get("note") or ""
        if result.get("round_seconds"):
            note = (
                f"{note} median of {result.get('rounds')}: "
                + "/".join(fmt(s, ".1f") for s in result["round_seconds"])
                + " s; foreign cores "
                + "/".join(fmt(c, ".2f") for c in result.get("round_foreign_cores") or [])
            ).strip()
        if result.get("disturbed_rounds"):
            note = f"{note}; DISTURBED rounds {result['disturbed_rounds']}".strip()
        if not result.get("ok"):
            note = result.get("skipped") or ("FAILED: " + str(result.get("error", ""))[:300])
        lines.append(
            f"{LABELS.get(result['path'], result['path']):<34} "
            f"{result.get('dataset', 'orders'):<6} {result['format']:<8} "
            f"{result['rows']:>10,} {fmt(result.get('seconds'), '.2f'):>8} "
            f"{fmt(result.get('work_seconds'), '.2f'):>7} "
            f"{fmt(result.get('cpu_seconds'), '.1f'):>6} "
            f"{fmt(rows_per_s, ',.0f'):>9} "
            f"{fmt(mb_per_s, '.1f'):>6} {fmt(result.get('peak_rss_mib'), '.0f'):>8} "
            f"{result.get('rows_loaded', '-'):>10}  {note}"
        )
    return "\n".join(lines)


def _find(
    results: list[dict[str, Any]], path: str, fmt_: str, rows: int, dataset: str = "orders"
) -> dict[str, Any] | None:
    for result in results:
        key = (result["path"], result["format"], result["rows"], result.get("dataset", "orders"))
        if key == (path, fmt_, rows, dataset):
            return result if result.get("ok") and result.get("seconds") else None
    return None


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput of ferry (with and without the transform) over the limit and the peers."""
    out = []
    for ferry in results:
        if ferry["path"] not in ("ferry", "ferry_plain") or not ferry.get("ok"):
            continue
        key = (ferry["format"], ferry["rows"], ferry.get("dataset", "orders"))
        row: dict[str, Any] = {
            "path": ferry["path"],
            "format": key[0],
            "rows": key[1],
            "dataset": key[2],
        }
        for peer in ("limit", "recipe", "dlt_fs", "sling"):
            found = _find(results, peer, *key)
            if found:
                row[f"vs_{peer}"] = round(found["seconds"] / ferry["seconds"], 3)
        row["peak_rss_mib"] = ferry.get("peak_rss_mib")
        out.append(row)
    return out


def ratio_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'path':<12} {'data':<6} {'format':<8} {'rows':>10} {'/limit':>7} {'/recipe':>8} "
        f"{'/dlt_fs':>8} {'/sling':>7} {'peak MiB':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['path']:<12} {row['dataset']:<6} {row['format']:<8} {row['rows']:>10,} "
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
                f"{result['path']:<12} {result.get('dataset', 'orders'):<6} "
                f"{result['format']:<8} {result['size']:<4} "
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
            f"statuses {push['statuses']}; server CPU {push.get('cpu_seconds_per_request')} s "
            f"per request; server RSS after {push['server_rss_mib']} MiB"
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


SIDE_BY_SIDE = ("limit", "dlt_fs", "recipe", "sling", "ferry_plain", "ferry")
FORMAT_NAMES = {"csv": "CSV", "csv.gz": "csv.gz", "jsonl": "JSONL", "parquet": "Parquet"}


def _cell(result: dict[str, Any] | None, cpu: bool = False) -> str:
    """'rows/s · peak MiB' (k rows/s), or the tree's CPU seconds; '*' when a round stayed
    disturbed after its retries."""
    rows_per_s = throughput(result)[0] if result else None
    if result is None or rows_per_s is None:
        return "\u2013"  # an en dash, as in the issue's table
    mark = "*" if result.get("disturbed_rounds") else ""
    if cpu:
        return f"{fmt(result.get('cpu_seconds'), '.1f')}{mark}"
    return f"{rows_per_s / 1000:,.0f}k · {result['peak_rss_mib']:,.0f}{mark}"


def side_by_side(results: list[dict[str, Any]], method: str) -> str:
    """The side-by-side table of issue 21 as Markdown, one per dataset; then the same runs'
    CPU seconds, which other processes disturb far less than wall time."""
    tables = [_side_by_side(results, cpu=False), _side_by_side(results, cpu=True)]
    return "\n".join([*tables, method])


def _side_by_side(results: list[dict[str, Any]], cpu: bool) -> str:
    out: list[str] = []
    datasets = dict.fromkeys(r.get("dataset", "orders") for r in results if r.get("dataset"))
    what = (
        "CPU seconds of the process tree (user + system; the ratios too)"
        if cpu
        else "rows/s · peak MiB (whole process)"
    )
    for dataset in datasets:
        keys = dict.fromkeys(
            (r["rows"], r["size"], r["format"])
            for r in results
            if r.get("dataset") == dataset and r["path"] in SIDE_BY_SIDE
        )
        if not keys:
            continue
        out += [
            f"{dataset}: {what}",
            "",
            "| input | DuckDB CTAS | dlt `read_csv_duckdb` | DuckDB-reader dlt recipe | Sling "
            "| ferry, no transform | ferry, rename/cast/filter/derive | ferry ÷ CTAS "
            "| ferry ÷ recipe |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for rows, size, file_format in sorted(keys, key=lambda k: (k[2] != "csv", k[2], k[0])):
            found = {p: _find(results, p, file_format, rows, dataset) for p in SIDE_BY_SIDE}
            ferry, limit, recipe = found["ferry"], found["limit"], found["recipe"]
            key = "cpu_seconds" if cpu else "seconds"
            vs_limit = _over(limit, ferry, key)
            vs_recipe = _over(recipe, ferry, key)
            cells = " | ".join(_cell(found[p], cpu) for p in SIDE_BY_SIDE)
            out.append(
                f"| {size} {FORMAT_NAMES.get(file_format, file_format)} | {cells} "
                f"| {fmt(vs_limit, '.2f')} | {fmt(vs_recipe, '.2f')} |"
            )
        out.append("")
    return "\n".join(out)


def _over(peer: dict[str, Any] | None, ferry: dict[str, Any] | None, key: str) -> float | None:
    """ferry's figure over the peer's as a speed ratio (> 1: ferry is faster / cheaper)."""
    if not peer or not ferry or not peer.get(key) or not ferry.get(key):
        return None
    return float(peer[key]) / float(ferry[key])


def machine() -> str:
    """CPU model, cores and memory of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return f"{model}, {os.cpu_count()} cores, {mem_kib / 1024 / 1024:.0f} GiB"


def method_line(
    results: list[dict[str, Any]], rounds: int, max_foreign: float, retries: int
) -> str:
    """Machine, rounds and how disturbed the runs were: printed under every table."""
    timed = [r for r in results if r.get("round_seconds")]
    foreign = [c for r in timed for c in r.get("round_foreign_cores") or [] if c is not None]
    disturbed = sum(r.get("disturbed_rounds", 0) for r in timed)
    kept = sum(len(r.get("round_seconds") or []) for r in timed)
    attempts = sum(r.get("attempts_total", 0) for r in timed)
    return (
        f"Machine: {machine()}. Medians of {rounds} interleaved rounds (path order rotated, "
        f"input read into the page cache before every run). Other processes' CPU during the "
        f"kept runs: median {fmt(statistics.median(foreign) if foreign else None, '.2f')} "
        f"cores, max {fmt(max(foreign) if foreign else None, '.2f')}; {attempts} runs for "
        f"{kept} kept rounds (a run over {max_foreign} foreign cores was repeated up to "
        f"{retries} times); "
        f"{disturbed} kept rounds stayed disturbed (* in a cell)."
    )


def write_json(path: Path, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    """`python -m bench.report RESULTS.json ...`: the side-by-side tables of one or more runs
    (later files win for the same path, dataset, format and size)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    methods: list[str] = []
    for name in argv:
        body = json.loads(Path(name).read_text(encoding="utf-8"))
        methods.append(str(body.get("method") or body.get("command")))
        for result in body["results"]:
            key = (result["path"], result.get("dataset"), result["format"], result["rows"])
            merged[key] = result
    print(side_by_side(list(merged.values()), "\n".join(methods)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

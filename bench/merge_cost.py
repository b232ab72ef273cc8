"""What ordered merges cost against a plain append (DuckDB, one process per measurement).

    .venv/bin/python -m bench.merge_cost [--rows 1000000] [--repeat 1]

Three pipelines load the same CSV of N changes (id, seq, 4 payload columns), each into a
fresh DuckDB file:
  * `append`: write_disposition append (ferry's DuckDB fast path: no staging copy);
  * `merge-unordered`: merge on `merge_key: [id]`, dlt's delete-insert with no sequence;
  * `ordered`: merge on `primary_key: [id]` with `sequence: seq` (ordering.py), and a CDC
    variant `ordered-cdc` (hard deletes, tombstones).
Each merge pipeline then loads a second file updating every key (the table already holds N
rows): the steady state of a dimension or CDC table. Prints rows/s and seconds per path, and
writes bench/out/merge_cost.json. Not a test: timings are never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "merge_cost.json"

PIPELINES = {
    "append": "write_disposition: append",
    "merge-unordered": "write_disposition: merge, merge_key: [id]",
    "ordered": "write_disposition: merge, primary_key: [id], sequence: seq",
    "ordered-cdc": (
        "write_disposition: merge, primary_key: [id], sequence: seq, "
        "cdc: {operation_column: op, delete_values: [d]}"
    ),
}


def write_changes(path: Path, rows: int, first_seq: int, delete_every: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    ids = pa.array(range(rows), pa.int64())
    seq = pa.array(range(first_seq, first_seq + rows), pa.int64())
    ops = ["d" if delete_every and i % delete_every == 0 else "u" for i in range(rows)]
    table = pa.table(
        {
            "id": ids,
            "seq": seq,
            "op": ops,
            "name": [f"name-{i}" for i in range(rows)],
            "amount": pa.array([i * 0.5 for i in range(rows)], pa.float64()),
            "country": [("DE", "FR", "US", "JP")[i % 4] for i in range(rows)],
            "note": [f"note {first_seq}" for _ in range(rows)],
        }
    )
    pacsv.write_csv(table, path)


def measure_child(workdir: Path, pipeline: str, source: Path) -> float:
    """One ferry run in its own process; returns its wall seconds (the run, not the import)."""
    code = (
        "import sys, time; from app.run.catalog import load_catalog; "
        "from app.run.runner import RunRequest, run; from core.settings import load_settings; "
        "s = load_settings(); c = load_catalog(s.pipelines_file); t = time.perf_counter(); "
        f"r = run(RunRequest({pipeline!r}, source_uri={str(source)!r}), s, c); "
        "print('RESULT', time.perf_counter() - t, r.rows_loaded, r.status)"
    )
    env = {
        **os.environ,
        "FERRY_PIPELINES_FILE": str(workdir / "pipelines.yaml"),
        "FERRY_DATA_DIR": str(workdir / "data"),
        "FERRY_DESTINATION": "duckdb",
        "FERRY_LOG_FORMAT": "json",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    _, seconds, _rows, status = line.split()
    if status != "succeeded":
        raise RuntimeError(f"{pipeline}: run {status}: {done.stderr[-2000:]}")
    return float(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"rows": args.rows, "paths": {}}
    with tempfile.TemporaryDirectory(prefix="ferry-merge-cost-") as tmp:
        root = Path(tmp)
        first, second = root / "in" / "first.csv", root / "in" / "second.csv"
        first.parent.mkdir()
        write_changes(first, args.rows, 1, 0)
        write_changes(second, args.rows, args.rows + 1, 10)  # every 10th key deleted
        results["csv_mb"] = round(first.stat().st_size / 2**20, 1)
        for name, destination in PIPELINES.items():
            timings: dict[str, list[float]] = {"first": [], "second": []}
            for attempt in range(args.repeat):
                workdir = root / f"{name}-{attempt}"
                workdir.mkdir()
                (workdir / "pipelines.yaml").write_text(
                    "pipelines:\n"
                    f"  - name: bench\n"
                    f"    source: {{uri: '{root}/in/*.csv', columns: {{id: int64, seq: int64}}}}\n"
                    f"    destination: {{table: changes, {destination}}}\n",
                    encoding="utf-8",
                )
                timings["first"].append(measure_child(workdir, "bench", first))
                if name != "append":
                    timings["second"].append(measure_child(workdir, "bench", second))
            best = {k: min(v) for k, v in timings.items() if v}
            results["paths"][name] = {
                "seconds": {k: round(v, 2) for k, v in best.items()},
                "rows_per_s": {k: round(args.rows / v) for k, v in best.items()},
            }
            print(name, json.dumps(results["paths"][name]), flush=True)
    append = results["paths"]["append"]["seconds"]["first"]
    for path in results["paths"].values():
        path["vs_append"] = {k: round(v / append, 2) for k, v in path["seconds"].items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

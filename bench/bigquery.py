"""`python -m bench.bigquery`: ferry's push and drain paths on BigQuery, through bqsim.

Starts the BigQuery, Cloud Storage and Pub/Sub emulators, `../shared/bqsim/proxy.py` in front
of the BigQuery one (`--models default,zero`: `model-default.json`, `model-zero.json`) and
`main.py serve` pointed at the proxy, then per round (a fresh dataset each) runs:

| scenario | what |
|---|---|
| `append_seq` | new 1,000-row objects pushed one after another to an append pipeline |
| `redelivery` | the same objects pushed again (new message ids): already loaded |
| `cdc_seq` | new 1,000-change objects (merge on `id`, `sequence: ts`, hard deletes) |
| `burst8`, `burst32` | new append objects pushed at concurrency 8 and 32 |
| `drain` | the `burst8` objects again, notified on a pull subscription, `main.py drain` |
| `burst500` | (`--burst500`) 500 new objects at concurrency 32 |

Per scenario: calls by kind per object (from the proxy's call log between two marks),
latency median/p90 (the push's HTTP answer; the drain's process), objects/s, push answers,
API errors by reason, and whether the rows are exactly right (read straight from the
emulator, never through the proxy). Timings are measured, never asserted.

    .venv/bin/python -m bench.bigquery                       # both models, 3 rounds
    .venv/bin/python -m bench.bigquery --models default --rounds 1 --scenarios append_seq
    .venv/bin/python -m bench.bigquery --code-dir /tmp/ferry-before   # serve another version
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.bqsim import find_proxy
from tests.emulators import (
    BigQueryEmulator,
    EmulatorProcess,
    GcsEmulator,
    PubSubEmulator,
    free_port,
    run_bigquery_emulator,
    run_gcs_emulator,
    run_pubsub_emulator,
)
from tests.pubsub_messages import gcs_notification, wrapped_push

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
ROWS_PER_OBJECT = 1000
CDC_KEYS = 5000
SCENARIOS = ("append_seq", "redelivery", "cdc_seq", "burst8", "burst32", "drain", "burst500")
DEFAULT_SCENARIOS = SCENARIOS[:-1]
CALL_KINDS = ("load", "SELECT", "DML", "DDL", "SCRIPT", "metadata", "job_get", "other")


def say(text: str) -> None:
    print(text, flush=True)


# --- the stack ------------------------------------------------------------------------------


@dataclass
class Proxy:
    base_url: str
    log_path: Path

    def mark(self, label: str) -> None:
        requests.post(f"{self.base_url}/__bqsim/mark", json={"label": label}, timeout=10)

    def reset(self) -> None:
        requests.post(f"{self.base_url}/__bqsim/reset", timeout=10)

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = requests.get(f"{self.base_url}/__bqsim/stats", timeout=10).json()
        return body

    def window(self, begin: str, end: str) -> list[dict[str, Any]]:
        """The calls logged between the marks `begin` and `end`."""
        inside, calls = False, list[dict[str, Any]]()
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "mark" in record:
                if record["mark"] == begin:
                    inside, calls = True, []
                elif record["mark"] == end and inside:
                    return calls
                continue
            if inside:
                calls.append(record)
        return calls


@contextmanager
def run_proxy(emulator: BigQueryEmulator, model: str, out: Path) -> Iterator[Proxy]:
    port = free_port()
    log_path = out / f"calls-{model}.jsonl"
    log_path.unlink(missing_ok=True)
    argv = [
        sys.executable,
        str(find_proxy()),
        "--upstream",
        emulator.endpoint,
        "--port",
        str(port),
        "--config",
        str(find_proxy().parent / f"model-{model}.json"),
        "--log",
        str(log_path),
        "--project",
        emulator.project,
    ]
    process = EmulatorProcess("bqsim", argv)
    proxy = Proxy(f"http://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        try:
            return requests.get(f"{proxy.base_url}/__bqsim/stats", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        process.wait_ready(ready)
        yield proxy
    finally:
        process.stop()


@dataclass
class Service:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def ferry_env(
    code_dir: Path,
    pipelines: Path,
    data_dir: Path,
    dataset: str,
    bigquery_host: str,
    gcs: GcsEmulator,
    pubsub: PubSubEmulator | None,
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "BIGQUERY_", "STORAGE_", "PUBSUB_"))
    }
    return env | {
        "FERRY_DESTINATION": "bigquery",
        "FERRY_PIPELINES_FILE": str(pipelines),
        "FERRY_DATA_DIR": str(data_dir),
        "FERRY_BIGQUERY_PROJECT": "test-project",
        "FERRY_BIGQUERY_DATASET": dataset,
        "FERRY_GCS_PROJECT": "test-project",
        "FERRY_LOG_FORMAT": "json",
        "FERRY_LOG_LEVEL": "WARNING",
        "BIGQUERY_EMULATOR_HOST": bigquery_host,
        "STORAGE_EMULATOR_HOST": gcs.endpoint,
        "PYTHONPATH": str(code_dir),
        **({"PUBSUB_EMULATOR_HOST": pubsub.host} if pubsub else {}),
    }


@contextmanager
def run_serve(code_dir: Path, env: dict[str, str], log_path: Path) -> Iterator[Service]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(code_dir / "main.py"), "serve", "--host", "127.0.0.1"],
            cwd=code_dir,
            env={**env, "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{service.base_url}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not healthy: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- data -----------------------------------------------------------------------------------


PIPELINES = """
pipelines:
  - name: events
    source: {{uri: "gs://{bucket}/append/*.csv"}}
    transform: [{{cast: {{id: int64, value: int64}}}}]
    destination: {{table: events}}
  - name: changes
    source: {{uri: "gs://{bucket}/cdc/*.csv"}}
    transform: [{{cast: {{id: int64, ts: int64}}}}]
    destination:
      table: changes
      write_disposition: merge
      primary_key: [id]
      sequence: ts
      cdc: {{operation_column: op}}
"""


@dataclass
class Objects:
    """What the bench uploaded, and what the tables must hold."""

    gcs: GcsEmulator
    bucket: str
    made: int = 0
    ts: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    reference: dict[int, str | None] = field(default_factory=dict)
    """CDC: id -> name of its latest change, None when that change deleted it."""

    def _upload(self, name: str, text: str) -> tuple[str, int]:
        blob = self.gcs.client().bucket(self.bucket).blob(name)
        blob.upload_from_string(text)
        stored = self.gcs.client().bucket(self.bucket).get_blob(name)
        assert stored is not None
        return name, int(stored.generation)

    def append_object(self) -> tuple[str, int]:
        self.made += 1
        n = self.made
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "name", "value"])
        for i in range(ROWS_PER_OBJECT):
            writer.writerow([n * ROWS_PER_OBJECT + i, f"row {n}-{i}", i])
        return self._upload(f"append/obj-{n:05d}.csv", out.getvalue())

    def cdc_object(self) -> tuple[str, int]:
        self.made += 1
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "name", "ts", "op"])
        for _ in range(ROWS_PER_OBJECT):
            self.ts += 1
            key = self.rng.randrange(CDC_KEYS)
            op = "d" if self.rng.random() < 0.1 else "u"
            name = f"v{self.ts}"
            writer.writerow([key, name, self.ts, op])
            self.reference[key] = None if op == "d" else name
        return self._upload(f"cdc/obj-{self.made:05d}.csv", out.getvalue())


# --- pushes ---------------------------------------------------------------------------------


@dataclass
class Answer:
    seconds: float
    http_status: int
    status: str
    run_id: str | None = None
    """The run that carried the push (a group's, shared by its members)."""
    stages: dict[str, float] = field(default_factory=dict)
    """That run's wall time per stage (its report's `seconds`)."""


def push(service: Service, bucket: str, name: str, generation: int) -> Answer:
    headers, body = wrapped_push(
        *gcs_notification(bucket, name, generation), message_id=uuid.uuid4().hex
    )
    started = time.perf_counter()
    try:
        response = requests.post(
            f"{service.base_url}/pubsub", headers=headers, data=body, timeout=900
        )
    except requests.RequestException as error:
        return Answer(time.perf_counter() - started, 0, type(error).__name__)
    seconds = time.perf_counter() - started
    try:
        body = response.json()
    except ValueError:
        return Answer(seconds, response.status_code, "?")
    reports = body.get("reports") or [{}]
    return Answer(
        seconds,
        response.status_code,
        str(body.get("status")),
        reports[0].get("run_id"),
        dict(reports[0].get("seconds") or {}),
    )


def push_all(
    service: Service, bucket: str, objects: list[tuple[str, int]], concurrency: int
) -> list[Answer]:
    if concurrency == 1:
        return [push(service, bucket, name, generation) for name, generation in objects]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda obj: push(service, bucket, *obj), objects))


# --- rows -----------------------------------------------------------------------------------


def table_rows(emulator: BigQueryEmulator, dataset: str, query: str) -> list[Any]:
    client = emulator.client()
    try:
        return list(client.query(query.format(t=f"`{emulator.project}.{dataset}`")).result())
    except Exception as error:
        if "not found" in str(error).lower():
            return []
        raise


def append_exact(emulator: BigQueryEmulator, dataset: str, names: list[str], bucket: str) -> bool:
    """Every row of each named object once, and no other rows of theirs."""
    rows = table_rows(
        emulator,
        dataset,
        "SELECT _ferry_source_uri AS uri, COUNT(*) AS n, COUNT(DISTINCT id) AS d "
        "FROM {t}.events GROUP BY 1",
    )
    counts = {str(r.uri): (int(r.n), int(r.d)) for r in rows}
    return all(
        counts.get(f"gs://{bucket}/{name}") == (ROWS_PER_OBJECT, ROWS_PER_OBJECT) for name in names
    )


def cdc_exact(emulator: BigQueryEmulator, dataset: str, reference: dict[int, str | None]) -> bool:
    rows = table_rows(emulator, dataset, "SELECT id, name FROM {t}.changes")
    got = {int(r.id): str(r.name) for r in rows}
    want = {key: name for key, name in reference.items() if name is not None}
    return got == want and len(rows) == len(got)


# --- scenario figures -----------------------------------------------------------------------


def calls_by_kind(calls: list[dict[str, Any]]) -> Counter[str]:
    """One count per API call; a resumable upload's bytes belong to its load job."""
    kinds: Counter[str] = Counter()
    for call in calls:
        if call.get("api") == "jobs.insert(upload-bytes)":
            continue
        kind = str(call.get("kind", "other"))
        kinds[kind if kind in CALL_KINDS else "other"] += 1
    return kinds


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def group_split(answers: list[Answer]) -> dict[str, Any]:
    """Where a burst's runs spent their time: per run (a group), the median of each stage of
    its report, and each push's wait before its run started (its answer's latency less its
    run's total)."""
    runs: dict[str, tuple[int, dict[str, float]]] = {}
    waits: list[float] = []
    for answer in answers:
        if answer.run_id is None:
            continue
        members, stages = runs.get(answer.run_id, (0, answer.stages))
        runs[answer.run_id] = (members + 1, stages)
        waits.append(answer.seconds - answer.stages.get("total", 0.0))
    stage_names = sorted({stage for _, stages in runs.values() for stage in stages})
    return {
        "runs": len(runs),
        "objects_per_run": round(statistics.mean(m for m, _ in runs.values()), 1) if runs else None,
        "largest_run": max((m for m, _ in runs.values()), default=None),
        "median_stage_s": {
            stage: round(statistics.median(s.get(stage, 0.0) for _, s in runs.values()), 2)
            for stage in stage_names
        },
        "median_wait_to_start_s": round(statistics.median(waits), 2) if waits else None,
    }


def figures(
    name: str,
    objects: int,
    wall: float,
    latencies: list[float],
    answers: Counter[str],
    calls: list[dict[str, Any]],
    exact: bool | None,
) -> dict[str, Any]:
    kinds = calls_by_kind(calls)
    total = sum(kinds.values())
    errors = Counter(
        str(c.get("reason") or c.get("status")) for c in calls if int(c.get("status") or 0) >= 400
    )
    modelled = sum(float(c.get("added_ms") or 0) for c in calls) / 1000
    return {
        "scenario": name,
        "objects": objects,
        "wall_s": round(wall, 2),
        "objects_per_s": round(objects / wall, 3) if wall else None,
        "median_s": round(statistics.median(latencies), 2) if latencies else None,
        "p90_s": round(percentile(latencies, 0.9), 2) if latencies else None,
        "calls_per_object": round(total / objects, 2) if objects else None,
        "by_kind_per_object": {k: round(v / objects, 2) for k, v in sorted(kinds.items())},
        "load_jobs_per_object": round(kinds["load"] / objects, 2) if objects else None,
        "modelled_s_per_object": round(modelled / objects, 2) if objects else None,
        "answers": dict(answers),
        "api_errors": dict(errors),
        "rows_exact": exact,
    }


# --- one round ------------------------------------------------------------------------------


@dataclass
class Round:
    args: argparse.Namespace
    model: str
    proxy: Proxy
    bigquery: BigQueryEmulator
    gcs: GcsEmulator
    pubsub: PubSubEmulator | None
    workdir: Path
    results: list[dict[str, Any]] = field(default_factory=list)
    sample_calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def run(self) -> list[dict[str, Any]]:
        tag = uuid.uuid4().hex[:8]
        bucket, dataset = f"bench-{tag}", f"bench_{tag}"
        self.gcs.client().create_bucket(bucket)
        pipelines = self.workdir / "pipelines.yaml"
        pipelines.write_text(PIPELINES.format(bucket=bucket), encoding="utf-8")
        objects = Objects(self.gcs, bucket)
        env = ferry_env(
            self.args.code_dir,
            pipelines,
            self.workdir / "data",
            dataset,
            self.proxy.base_url,
            self.gcs,
            self.pubsub,
        )
        wanted = self.args.scenario_list
        self.proxy.reset()
        with run_serve(self.args.code_dir, env, self.workdir / "serve.log") as service:
            # a warm instance: the first push of each pipeline creates the tables
            for made in (objects.append_object(), objects.cdc_object()):
                answer = push(service, bucket, *made)
                if answer.http_status != 200:
                    raise RuntimeError(f"warm-up push failed: {answer}")
            appended: list[str] = []
            seq: list[tuple[str, int]] = []
            if "append_seq" in wanted or "redelivery" in wanted:
                seq = [objects.append_object() for _ in range(self.args.seq)]
                self._pushes("append_seq", service, bucket, seq, 1, dataset, appended)
            if "redelivery" in wanted:
                self._pushes("redelivery", service, bucket, seq, 1, dataset, appended, new=False)
            if "cdc_seq" in wanted:
                changes = [objects.cdc_object() for _ in range(self.args.seq)]
                self._pushes("cdc_seq", service, bucket, changes, 1, dataset, appended, cdc=objects)
            burst8: list[tuple[str, int]] = []
            if "burst8" in wanted or "drain" in wanted:
                burst8 = [objects.append_object() for _ in range(self.args.burst8)]
                self._pushes("burst8", service, bucket, burst8, 8, dataset, appended)
            if "burst32" in wanted:
                burst32 = [objects.append_object() for _ in range(self.args.burst32)]
                self._pushes("burst32", service, bucket, burst32, 32, dataset, appended)
            if "burst500" in wanted:
                many = [objects.append_object() for _ in range(self.args.burst500)]
                self._pushes("burst500", service, bucket, many, 32, dataset, appended)
        if "drain" in wanted and self.pubsub is not None:
            self._drain(env, bucket, dataset + "_drain", burst8)
        self.results.append({"scenario": "proxy_stats", "stats": self.proxy.stats()})
        return self.results

    def _pushes(
        self,
        name: str,
        service: Service,
        bucket: str,
        objects: list[tuple[str, int]],
        concurrency: int,
        dataset: str,
        appended: list[str],
        *,
        new: bool = True,
        cdc: Objects | None = None,
    ) -> None:
        begin, end = f"begin:{name}:{uuid.uuid4().hex[:6]}", f"end:{name}"
        self.proxy.mark(begin)
        started = time.perf_counter()
        answers = push_all(service, bucket, objects, concurrency)
        wall = time.perf_counter() - started
        self.proxy.mark(end)
        calls = self.proxy.window(begin, end)
        if cdc is not None:
            exact: bool | None = cdc_exact(self.bigquery, dataset, cdc.reference)
        else:
            if new:
                appended.extend(obj for obj, _ in objects)
            exact = append_exact(self.bigquery, dataset, appended, bucket)
        statuses = Counter(f"{a.http_status} {a.status}" for a in answers)
        result = figures(
            name, len(objects), wall, [a.seconds for a in answers], statuses, calls, exact
        )
        if concurrency > 1:
            result["groups"] = group_split(answers)
        self.results.append(result)
        if concurrency == 1 and objects:
            # the calls of the last push, one by one (BENCH_SHOW_CALLS-style)
            self.sample_calls[name] = _last_push_calls(calls, len(objects))
        say("  " + line(result))
        if "groups" in result:
            say(f"    groups: {result['groups']}")

    def _drain(
        self, env: dict[str, str], bucket: str, dataset: str, objects: list[tuple[str, int]]
    ) -> None:
        assert self.pubsub is not None
        project = self.pubsub.project
        tag = uuid.uuid4().hex[:8]
        publisher, subscriber = self.pubsub.publisher(), self.pubsub.subscriber()
        topic = publisher.create_topic(name=f"projects/{project}/topics/drain-{tag}").name
        subscription = subscriber.create_subscription(
            name=f"projects/{project}/subscriptions/drain-{tag}", topic=topic
        ).name
        drain_env = env | {"FERRY_BIGQUERY_DATASET": dataset, "FERRY_LOG_LEVEL": "INFO"}

        def publish(batch: list[tuple[str, int]]) -> None:
            futures = [
                publisher.publish(topic, data, **attributes)
                for data, attributes in (gcs_notification(bucket, n, g) for n, g in batch)
            ]
            for future in futures:
                future.result(timeout=60)

        def drain_once() -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "main.py", "drain", "--subscription", subscription],
                cwd=self.args.code_dir,
                env=drain_env,
                capture_output=True,
                timeout=1800,
                check=False,
            )
            seconds = time.perf_counter() - started
            report: dict[str, Any] = {"returncode": done.returncode}
            for raw in (
                done.stdout.decode(errors="replace").splitlines()
                + done.stderr.decode(errors="replace").splitlines()
            ):
                if raw.startswith("{") and "drain_report" in raw:
                    report = json.loads(raw)["drain_report"] | {"returncode": done.returncode}
            return seconds, report

        # warm: the first drain of a dataset creates its tables
        warm = objects[:1]
        publish(warm)
        drain_once()
        rest = objects[1:]
        publish(rest)
        begin, end = f"begin:drain:{tag}", "end:drain"
        self.proxy.mark(begin)
        seconds, report = drain_once()
        self.proxy.mark(end)
        calls = self.proxy.window(begin, end)
        exact = append_exact(self.bigquery, dataset, [n for n, _ in objects], bucket)
        answers = Counter({"acked": int(report.get("acked", 0)), "nacked": report.get("nacked", 0)})
        result = figures("drain", len(rest), seconds, [seconds], answers, calls, exact)
        self.results.append(result)
        say("  " + line(result))


def _last_push_calls(calls: list[dict[str, Any]], pushes: int) -> list[dict[str, Any]]:
    """A sequential scenario's calls split evenly is wrong when pushes differ; take the tail
    after the last push's first call: the calls since the previous push's run-log write."""
    share = max(1, len(calls) // max(1, pushes))
    return [
        {
            "api": c.get("api"),
            "kind": c.get("kind"),
            "added_ms": c.get("added_ms"),
            "status": c.get("status"),
            "what": (c.get("statements") or [c.get("resource") or ""])[:3],
            "sql": str(c.get("sql", ""))[:160],
        }
        for c in calls[-share:]
    ]


# --- report ---------------------------------------------------------------------------------


def line(result: dict[str, Any]) -> str:
    kinds = result["by_kind_per_object"]
    kind_text = " ".join(f"{k}={v:g}" for k, v in kinds.items())
    return (
        f"{result['scenario']:<11} n={result['objects']:<4} "
        f"median={result['median_s']}s p90={result['p90_s']}s "
        f"obj/s={result['objects_per_s']} calls/obj={result['calls_per_object']} "
        f"[{kind_text}] answers={result['answers']} errors={result['api_errors']} "
        f"exact={result['rows_exact']}"
    )


def median_table(model: str, rounds: list[list[dict[str, Any]]]) -> str:
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for results in rounds:
        for result in results:
            if result["scenario"] != "proxy_stats":
                by_scenario.setdefault(result["scenario"], []).append(result)
    out = [
        f"\n### model-{model}.json, median of {len(rounds)} round(s)\n",
        "| scenario | objects | calls/object (load jobs) | by kind per object | "
        "median s | p90 s | objects/s | answers | API errors | rows exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, results in by_scenario.items():

        def med(key: str, results: list[dict[str, Any]] = results) -> float | None:
            values = [r[key] for r in results if r.get(key) is not None]
            return round(statistics.median(values), 2) if values else None

        kinds: dict[str, float] = {}
        for kind in CALL_KINDS:
            values = [r["by_kind_per_object"].get(kind, 0.0) for r in results]
            if any(values):
                kinds[kind] = round(statistics.median(values), 2)
        answers: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for r in results:
            answers.update(r["answers"])
            errors.update(r["api_errors"])
        exact = [r["rows_exact"] for r in results]
        out.append(
            f"| {name} | {results[0]['objects']} | {med('calls_per_object')} "
            f"({med('load_jobs_per_object')}) | "
            + ", ".join(f"{k} {v:g}" for k, v in kinds.items())
            + f" | {med('median_s')} | {med('p90_s')} | {med('objects_per_s')} | "
            + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()))
            + " | "
            + (", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "-")
            + f" | {'yes' if all(exact) else 'NO ' + str(exact)} |"
        )
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bigquery", description=__doc__)
    parser.add_argument("--models", default="default,zero", help="bqsim models: default,zero")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    parser.add_argument("--seq", type=int, default=6, help="objects per sequential scenario")
    parser.add_argument("--burst8", type=int, default=24, help="objects at concurrency 8")
    parser.add_argument("--burst32", type=int, default=64, help="objects at concurrency 32")
    parser.add_argument("--burst500", type=int, default=500, help="objects of burst500")
    parser.add_argument("--code-dir", type=Path, default=REPO, help="the ferry to serve")
    parser.add_argument("--label", default="", help="name of this run in bench/out/")
    args = parser.parse_args(argv)
    args.code_dir = args.code_dir.resolve()
    args.scenario_list = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenario_list) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    return args


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds the stack: every emulator and child is stopped


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)
    args = parse_args(argv)
    label = args.label or time.strftime("%Y%m%dT%H%M%S")
    out = OUT / f"bigquery-{label}"
    out.mkdir(parents=True, exist_ok=True)
    say(f"ferry from {args.code_dir}; results in {out}")
    body: dict[str, Any] = {"command": "python -m bench.bigquery " + " ".join(argv)}
    tables = []
    with ExitStack() as stack:
        bigquery = stack.enter_context(run_bigquery_emulator())
        gcs = stack.enter_context(run_gcs_emulator())
        pubsub = (
            stack.enter_context(run_pubsub_emulator()) if "drain" in args.scenario_list else None
        )
        for model in args.models.split(","):
            proxy = stack.enter_context(run_proxy(bigquery, model, out))
            rounds = []
            for number in range(args.rounds):
                say(f"model-{model}.json, round {number + 1}/{args.rounds}")
                workdir = out / f"{model}-{number}"
                workdir.mkdir(parents=True, exist_ok=True)
                one = Round(args, model, proxy, bigquery, gcs, pubsub, workdir)
                rounds.append(one.run())
                body.setdefault("sample_calls", {})[model] = one.sample_calls
            body.setdefault("rounds", {})[model] = rounds
            tables.append(median_table(model, rounds))
            (out / "results.json").write_text(json.dumps(body, indent=1, default=str))
    text = "\n".join(tables)
    say(text)
    (out / "tables.md").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

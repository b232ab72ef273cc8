"""The run-history page in a real browser: headless Chromium renders `/ui/runs` of a running
service (`python main.py serve`) and we read its DOM and take a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.helpers import write_catalog
from tests.service_process import run_service

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root (CI containers)
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "headless Chromium is needed for the run-history page test and is not on PATH: "
        "install it (Debian: apt-get install -y chromium; bash scripts/test.sh does this)"
    )


def browse(url: str, profile: Path, *extra: str) -> str:
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done.stdout.decode()


def test_history_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium()  # fail first, clearly, when the browser is missing
    (tmp_path / "data" / "people").mkdir(parents=True)
    (tmp_path / "data" / "broken").mkdir()
    (tmp_path / "data" / "people" / "a.csv").write_text(
        "id,name\n1,a\n2,b\n3,c\n", encoding="utf-8"
    )
    # a file name with markup: it reaches the page inside the error message
    (tmp_path / "data" / "broken" / "<b>bold.csv").write_text("id,name\n1,a,x\n", encoding="utf-8")
    write_catalog(
        tmp_path,
        """
        pipelines:
          - {name: people, source: {uri: "data/people/*.csv"}, destination: {table: people}}
          - {name: broken, source: {uri: "data/broken/*.csv"}, destination: {table: broken}}
        """,
    )
    env = {
        "FERRY_DESTINATION": "duckdb",
        "FERRY_DATA_DIR": str(tmp_path / "ferry-data"),
        "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
    }
    with run_service(env, tmp_path / "service.log") as service:
        run_ids = []
        # succeeded, failed (bad data), skipped (the same file again: already loaded)
        for pipeline, status in (("people", 200), ("broken", 422), ("people", 200)):
            response = requests.post(
                f"{service.base_url}/runs", json={"pipeline": pipeline}, timeout=120
            )
            assert response.status_code == status, response.text
            body = response.json()
            run_ids.append(body.get("run_id") or body["report"]["run_id"])

        url = f"{service.base_url}/ui/runs"
        dom = browse(url, tmp_path / "profile-dom", "--dump-dom")
        screenshot = tmp_path / "runs.png"
        browse(
            url,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1200,800",
        )

    rows = re.findall(r'<tr class="run" data-run-id="([^"]+)"', dom)
    assert rows == list(reversed(run_ids)), "newest first, one row per run"
    badges = re.findall(r'<span class="badge (\w+)">', dom)
    assert badges == ["skipped", "failed", "succeeded"], "the second people run had nothing new"
    assert "people: 3</span>" in dom
    assert "bad_data" in dom
    assert "<b>bold" not in dom, "markup from a file name is shown as text, not rendered"
    assert screenshot.stat().st_size > 10_000, "a blank page would compress to almost nothing"

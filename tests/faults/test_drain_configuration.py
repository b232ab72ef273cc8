"""`main.py drain` misconfigured (issue 19): no credentials, or a subscription that is not a
subscription name, is a configuration error: one clean sentence and exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, write_catalog


def drain(tmp_path: Path, subscription: str, **env: str) -> subprocess.CompletedProcess[str]:
    write_catalog(
        tmp_path,
        """
        pipelines:
          - name: people
            source: {uri: "gs://bucket/in/*.csv"}
            destination: {table: people}
        """,
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FERRY_", "GOOGLE_", "PUBSUB_", "CLOUDSDK_"))
    }
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), "drain", "--subscription", subscription],
        cwd=tmp_path,
        env={
            **clean,
            "HOME": str(tmp_path),  # no gcloud credentials file
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "NO_GCE_CHECK": "True",  # no metadata server lookup (it would leave 127.0.0.1)
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
            "FERRY_DATA_DIR": str(tmp_path / "data"),
            "FERRY_PIPELINES_FILE": str(tmp_path / "pipelines.yaml"),
            "FERRY_LOG_FORMAT": "text",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("subscription", "env", "said"),
    [
        ("projects/p/subscriptions/s", {}, "no Google credentials"),
        ("ferry-drain", {"PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}, "is not a subscription name"),
        ("projects/p/topics/t", {"PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}, "must look like"),
    ],
)
def test_a_misconfigured_drain_says_so_in_a_sentence_and_exits_2(
    tmp_path: Path, subscription: str, env: dict[str, str], said: str
) -> None:
    done = drain(tmp_path, subscription, **env)

    assert done.returncode == 2, done.stderr[-3000:]
    assert said in done.stderr
    assert "Traceback" not in done.stderr

"""cloudbuild.yaml, checked the way Cloud Build would reject it, plus what deploys where."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_dockerfile import parse_dockerfile

CLOUDBUILD = Path(__file__).resolve().parents[2] / "cloudbuild.yaml"
# Cloud Build's built-in substitutions (user-defined ones start with `_`).
BUILT_IN = {
    "PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA",
    "REVISION_ID", "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME",
    "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT",
}  # fmt: skip
# `$$` is a literal dollar; otherwise `$NAME` or `${NAME}` is a substitution.
SUBSTITUTION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def load() -> dict[str, Any]:
    config = yaml.safe_load(CLOUDBUILD.read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def steps() -> dict[str, dict[str, Any]]:
    return {str(step["id"]): step for step in load()["steps"]}


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


def used_substitutions(config: dict[str, Any]) -> set[str]:
    body = {key: value for key, value in config.items() if key != "substitutions"}
    return {
        match.group(1) or match.group(2)
        for text in strings(body)
        for match in SUBSTITUTION.finditer(text)
        if match.group(0) != "$$"
    }


def flag(step: dict[str, Any], name: str) -> list[str]:
    """Values of `--name=value` / `--name value` in a step's args."""
    args = [str(arg) for arg in step["args"]]
    values = [arg.split("=", 1)[1] for arg in args if arg.startswith(f"--{name}=")]
    values += [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == f"--{name}"]
    return values


def test_it_parses_and_every_step_names_a_builder() -> None:
    config = load()
    assert config["steps"], "no steps"
    for step in config["steps"]:
        assert isinstance(step.get("name"), str) and step["name"], step
        assert isinstance(step.get("args"), list), step
        assert set(step) <= {"id", "name", "args", "entrypoint", "waitFor", "env", "dir"}, step


def test_step_ids_are_unique_and_wait_for_existing_steps() -> None:
    ids = [step.get("id") for step in load()["steps"]]
    assert all(ids) and len(ids) == len(set(ids)), ids
    for step in load()["steps"]:
        for dependency in step.get("waitFor", []):
            assert dependency == "-" or ids.index(dependency) < ids.index(step["id"]), (
                f"{step['id']} waits for {dependency}, which is not an earlier step"
            )


def test_every_substitution_used_is_declared_and_every_declared_one_is_used() -> None:
    config = load()
    declared = set(config["substitutions"])
    used = used_substitutions(config)
    assert all(name.startswith("_") for name in declared), "user substitutions start with _"
    assert used - declared - BUILT_IN == set(), "used but not declared"
    # Cloud Build fails a build whose substitutions are not all used
    assert declared - used == set(), "declared but never used"
    assert "SHORT_SHA" not in used, "empty in manual builds: the image tag would be blank"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("${_REGION}-docker.pkg.dev/$PROJECT_ID", {"_REGION", "PROJECT_ID"}),
        ("for attempt in $$(seq 30)", set()),
        ("$$HOME and $BUILD_ID", {"BUILD_ID"}),
    ],
    ids=["braced-and-bare", "escaped-dollar", "mixed"],
)
def test_substitution_scanner(text: str, names: set[str]) -> None:
    assert used_substitutions({"steps": [{"args": [text]}]}) == names


def test_the_built_image_is_the_pushed_and_the_deployed_image() -> None:
    by_id = steps()
    built = flag(by_id["build"], "tag")
    repository = {tag.rsplit(":", 1)[0] for tag in built}
    assert len(repository) == 1, built
    (image,) = repository
    assert "-docker.pkg.dev/" in image, "push to Artifact Registry"
    assert by_id["push"]["args"] == ["push", "--all-tags", image]
    assert set(load()["images"]) == set(built)
    tagged = next(tag for tag in built if not tag.endswith(":latest"))
    for step_id in ("deploy-service", "deploy-job"):
        assert flag(by_id[step_id], "image") == [tagged], step_id
    assert image + ":latest" in flag(by_id["build"], "cache-from")
    assert tagged in " ".join(strings(by_id["smoke"]["args"]))


def test_push_and_deploys_wait_for_the_tests_and_the_smoke_run() -> None:
    by_id = steps()
    assert {"test", "smoke"} <= set(by_id["push"]["waitFor"])
    assert by_id["deploy-service"]["waitFor"] == ["push"]
    assert by_id["deploy-job"]["waitFor"] == ["push"]


def test_the_test_step_runs_real_tests_on_the_image_python() -> None:
    step = steps()["test"]
    assert step["name"] == parse_dockerfile().base
    script = " ".join(strings(step["args"]))
    assert "-r requirements-dev.txt" in script
    pytest_args = shlex.split(script.split("python -m pytest", 1)[1])
    assert "-m" in pytest_args and pytest_args[pytest_args.index("-m") + 1] == "not emulators"


def test_the_service_is_private_and_sized_for_heavy_runs() -> None:
    step = steps()["deploy-service"]
    assert step["args"][:2] == ["run", "deploy"]
    assert "--no-allow-unauthenticated" in step["args"]
    assert "--allow-unauthenticated" not in step["args"]
    assert int(flag(step, "concurrency")[0]) <= 4
    # a push outliving Cloud Run's timeout would be cut before its ack deadline (max 600 s)
    assert int(flag(step, "timeout")[0]) >= 600
    env = flag(step, "update-env-vars")[0]
    assert "FERRY_BIGQUERY_PROJECT=$PROJECT_ID" in env
    assert "FERRY_DEAD_LETTER_TOPIC=projects/$PROJECT_ID/topics/" in env


def test_the_job_does_not_retry_terminal_failures_and_does_not_serve() -> None:
    step = steps()["deploy-job"]
    assert step["args"][:3] == ["run", "jobs", "deploy"]
    assert "FERRY_TERMINAL_EXIT_CODE=0" in flag(step, "update-env-vars")[0]
    assert flag(step, "args")[0].startswith("run,"), "the image's default command serves"


def test_logging_option_allows_a_user_specified_build_service_account() -> None:
    assert load()["options"]["logging"] == "CLOUD_LOGGING_ONLY"

"""One typed settings object, read from the environment by a function (never at import time)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DestinationKind = Literal["auto", "duckdb", "bigquery"]


class JobExit(BaseSettings):
    """The one setting the CLI needs even when the others are invalid (see Settings)."""

    model_config = SettingsConfigDict(env_prefix="FERRY_", extra="ignore", frozen=True)

    terminal_exit_code: int = 2
    """Exit code for terminal errors. Cloud Run Jobs retry any non-zero exit: set 0 there
    so a bad config or bad file is logged as an error but not retried."""


class Settings(JobExit):
    model_config = SettingsConfigDict(env_prefix="FERRY_", extra="ignore", frozen=True)

    pipelines_file: Path = Field(default_factory=lambda: default_pipelines_file())
    """The pipelines YAML file (baked into the image, or mounted). Unset: `./pipelines.yaml`
    when it exists, else the demo file `examples/pipelines.yaml` of this installation."""
    destination: DestinationKind = "auto"
    """`auto`: BigQuery when `bigquery_project` is set, else DuckDB."""
    bigquery_project: str | None = None
    bigquery_dataset: str = "ferry"
    bigquery_location: str = "US"
    bigquery_emulator_host: str | None = Field(
        default=None, validation_alias="BIGQUERY_EMULATOR_HOST"
    )
    """Set only for the local BigQuery emulator: no real credentials are used then."""
    data_dir: Path = Path(".data")
    """Where the embedded default keeps its DuckDB file and run working dirs."""
    duckdb_path: Path | None = None
    """Defaults to `<data_dir>/local.duckdb` (its name must differ from the dataset name)."""
    duckdb_dataset: str = "ferry"
    duckdb_memory_limit: str = "128MB"
    """DuckDB's own memory cap while loading (it spills to disk past it)."""
    duckdb_streamed_memory_limit: str = "64MB"
    """DuckDB's cap while it appends a big run's rows as they are read (streamed_append_bytes):
    the reader's batches are in memory beside it, where a load after the read has it alone."""
    streamed_append_bytes: int = Field(default=16 << 20, ge=0)
    """Where the engine can (DuckDB), a run of new objects this big in all appends its rows
    while it reads, in one transaction committed at the load, holding the destination's
    lock from its first rows (smaller runs take it only to load, so they overlap)."""
    duckdb_lock_wait_seconds: float = Field(default=120.0, gt=0)
    """Longest a run waits for DuckDB's one writer (another run, a model build): past it the
    run fails retriably (503 / nack / exit 1); the report says how long it waited."""
    gcs_project: str | None = None
    google_cloud_project: str | None = Field(default=None, validation_alias="GOOGLE_CLOUD_PROJECT")
    """The project whose Cloud Trace the request traces belong to (log lines name it)."""
    storage_emulator_host: str | None = Field(
        default=None, validation_alias="STORAGE_EMULATOR_HOST"
    )
    batch_bytes: int = 8 << 20
    """Bytes of source text parsed per Arrow batch: bounds memory per batch."""
    max_uncompressed_bytes: int = 50 << 30
    """A compressed object that expands past this is rejected (gzip-bomb defence)."""
    max_columns: int = Field(default=10_000, ge=1)
    """A file with more columns is refused as terminal bad data before loading (BigQuery
    takes at most 10,000 columns per table)."""
    dead_letter_topic: str | None = None
    """`projects/P/topics/T`: terminal push failures are published here, then acknowledged."""
    run_events_topic: str | None = None
    """`projects/P/topics/T`: every run publishes a completion or failure event here."""
    run_log: bool = True
    """Record every run's report in a `_ferry_runs` table in the destination (one small
    load per run); read back by `GET /runs`."""
    group_commit: bool = True
    """Pushes of one pipeline that arrive while a run of it is going share its next run (one
    load, one set of statements); each is answered with its own object's outcome."""
    group_commit_max_objects: int = Field(default=500, ge=1)
    """At most this many objects in one shared run."""
    group_commit_min_interval_seconds: float = Field(default=0.0, ge=0.0)
    """A pipeline's runs from pushes start at least this long apart (0: as soon as the last
    ended); the pushes of the interval share the next run. 60 keeps a busy table under
    BigQuery's 1,500 load jobs per table per day; keep the ack deadline above it."""
    max_request_bytes: int = 10 << 20
    """Larger request bodies get 413 (a Pub/Sub message is at most 10 MB)."""
    shutdown_grace_seconds: float = 8.0
    """After SIGTERM, in-flight requests get this long (Cloud Run allows 10 s in all)."""
    log_format: Literal["auto", "json", "text"] = "auto"
    """`json` (Cloud Logging), `text`, or `auto`: text on a terminal, JSON otherwise."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    push_auth_audience: str | None = None
    """Expected `aud` of the OIDC token on Pub/Sub push / Eventarc requests (the push
    endpoint URL or a custom audience). Unset: ferry does not verify tokens itself (Cloud
    Run IAM may still do it)."""
    push_auth_service_accounts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Service account emails allowed to push (comma-separated or a JSON list); required
    when `push_auth_audience` is set."""
    push_auth_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    """Where Google's token-signing certificates are fetched ({key id: PEM certificate})."""
    push_auth_issuers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["https://accounts.google.com", "accounts.google.com"]
    )
    """Accepted `iss` claims (comma-separated or a JSON list)."""
    staging_max_age_hours: float = Field(default=24.0, gt=0)
    """Staging datasets of runs that started longer ago than this were left by killed runs
    and are dropped (at the start of a run and by `main.py gc`). Keep it above the longest
    run: a live run's staging dataset must never be swept."""
    writer_lease_prefix: str | None = None
    """BigQuery: `gs://bucket/prefix` where instances take a lease per destination table
    before loading into it, so loads of one table from any number of instances, services
    and jobs run one at a time (app/destinations/writers.py). Unset: loads are serialised
    per table within an instance only, so run one instance (or set it)."""
    writer_lease_seconds: float = Field(default=120.0, gt=0)
    """A lease not renewed for this long was left by a dead instance and is taken over;
    its holder renews it every third of this."""
    writer_wait_seconds: float = Field(default=300.0, gt=0)
    """How long a load waits for another writer of its table before failing retriably."""
    docs: bool | None = None
    """Serve the OpenAPI pages `/docs` and `/redoc` (their scripts come from a CDN). Unset:
    on, except on Cloud Run (`K_SERVICE` set) or with `FERRY_ENV=production`."""
    env: str | None = None
    """`production` turns off what is meant for local use only (the docs pages)."""
    cloud_run_service: str | None = Field(default=None, validation_alias="K_SERVICE")
    """Set by Cloud Run in a service's container."""
    runs_auth_audience: str | None = None
    """Expected `aud` of the OIDC token on `POST /runs` and the history routes (`GET /runs`,
    `GET /runs/{id}`, `/ui/runs`). Unset: ferry does not verify those callers itself."""
    runs_auth_allowed_callers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Service account emails allowed to start runs and read history (an orchestrator's
    account; comma-separated or a JSON list); required when `runs_auth_audience` is set.
    Certificates and issuers are the push ones."""

    @field_validator(
        "push_auth_service_accounts",
        "push_auth_issuers",
        "runs_auth_allowed_callers",
        mode="before",
    )
    @classmethod
    def split_list(cls, value: Any) -> Any:
        """Accept `a,b` as well as `["a", "b"]` from the environment."""
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else text.split(",")
        else:
            items = value
        if isinstance(items, list):
            return [str(item).strip() for item in items if str(item).strip()]
        return items

    @field_validator("log_level", mode="before")
    @classmethod
    def upper_case_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("bigquery_dataset", "duckdb_dataset")
    @classmethod
    def dataset_identifier(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$", value):
            raise ValueError(f"'{value}' is not a valid dataset name (letters, digits, underscore)")
        return value

    @model_validator(mode="after")
    def duckdb_file_is_not_named_like_the_dataset(self) -> Settings:
        # DuckDB calls the catalog after the file: 'ferry.duckdb' + dataset 'ferry' is ambiguous
        if self.resolved_duckdb_path.stem == self.duckdb_dataset:
            raise ValueError(
                "FERRY_DUCKDB_PATH's file name must differ from the dataset "
                f"'{self.duckdb_dataset}'"
            )
        return self

    @model_validator(mode="after")
    def destination_is_configured(self) -> Settings:
        if self.destination == "bigquery" and not self.bigquery_project:
            raise ValueError("FERRY_DESTINATION=bigquery needs FERRY_BIGQUERY_PROJECT")
        return self

    @model_validator(mode="after")
    def push_auth_is_configured(self) -> Settings:
        # an audience alone would accept any Google-signed token for that URL
        if self.push_auth_audience and not self.push_auth_service_accounts:
            raise ValueError(
                "FERRY_PUSH_AUTH_AUDIENCE needs FERRY_PUSH_AUTH_SERVICE_ACCOUNTS "
                "(the service account emails allowed to push)"
            )
        if self.push_auth_audience and not self.push_auth_issuers:
            raise ValueError("FERRY_PUSH_AUTH_ISSUERS must not be empty")
        return self

    @model_validator(mode="after")
    def runs_auth_is_configured(self) -> Settings:
        if self.runs_auth_audience and not self.runs_auth_allowed_callers:
            raise ValueError(
                "FERRY_RUNS_AUTH_AUDIENCE needs FERRY_RUNS_AUTH_ALLOWED_CALLERS "
                "(the service account emails allowed to start runs)"
            )
        if self.runs_auth_audience and not self.push_auth_issuers:
            raise ValueError("FERRY_PUSH_AUTH_ISSUERS must not be empty")
        return self

    @property
    def destination_kind(self) -> Literal["duckdb", "bigquery"]:
        if self.destination == "auto":
            return "bigquery" if self.bigquery_project else "duckdb"
        return self.destination

    @property
    def trace_project(self) -> str | None:
        """The project in `projects/P/traces/T` of log lines."""
        return self.google_cloud_project or self.bigquery_project or self.gcs_project

    @property
    def docs_enabled(self) -> bool:
        if self.docs is not None:
            return self.docs
        return not self.cloud_run_service and self.env != "production"

    @property
    def resolved_duckdb_path(self) -> Path:
        return self.duckdb_path or self.data_dir / "local.duckdb"

    @property
    def dataset_name(self) -> str:
        if self.destination_kind == "bigquery":
            return self.bigquery_dataset
        return self.duckdb_dataset


DEMO_PIPELINES_FILE = Path(__file__).resolve().parents[1] / "examples" / "pipelines.yaml"
"""The demo pipelines file, next to the code (in a clone, in the image and in a `pip install`)."""


def default_pipelines_file() -> Path:
    """`./pipelines.yaml` (what `ferry init` writes) when it exists, else the demo file."""
    local = Path("pipelines.yaml")
    return local if local.is_file() else DEMO_PIPELINES_FILE


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (`overrides`, e.g. from command-line options, win);
    a bad value becomes a terminal ConfigError."""
    from core.errors import ConfigError
    from core.problems import problem_text

    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = problem_text(error, model=Settings, who=_variable)
        raise ConfigError(f"invalid settings: {problems}") from None


def _variable(loc: tuple[int | str, ...]) -> tuple[str, int]:
    """A setting's location as the environment variable that holds it."""
    if not loc:
        return "", 0
    name = str(loc[0])
    return (name if name.isupper() else f"FERRY_{name.upper()}"), len(loc)

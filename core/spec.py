"""Pipeline definitions: what a pipelines file may declare, validated field by field."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from core.errors import ConfigError
from core.model_spec import ModelSpec
from core.problems import UNKNOWN_ENTRY
from core.uris import is_gcs, split_gs_uri

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
PIPELINE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

FileFormat = Literal["csv", "jsonl", "parquet"]
Compression = Literal["auto", "gzip", "none"]
ArrowTypeName = Literal[
    "string", "int64", "int32", "float64", "bool", "timestamp", "date", "decimal"
]


class Strict(BaseModel):
    # a field's docstring is its description in the JSON Schema (`ferry schema`)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def check_identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"'{value}' is not a valid identifier (letters, digits, underscore; "
            "must not start with a digit)"
        )
    return value


class CsvOptions(Strict):
    delimiter: str = ","
    """The one character between fields."""
    header: bool = True
    """False: columns are named by `column_names` (or f0, f1, ...)."""
    column_names: list[str] | None = None
    """Column names for a file without a header row."""
    quote_char: str = '"'
    """The one character that quotes a field."""
    newlines_in_values: bool = True
    """Allow quoted values that span lines (slower to parse; turn off for speed)."""
    encoding: str = "utf-8"
    """Any codec Python knows; a UTF-8 BOM is always stripped."""
    null_values: list[str] = Field(default_factory=lambda: ["", "NULL", "null", "NA"])
    """Values read as null (missing)."""

    @field_validator("delimiter", "quote_char")
    @classmethod
    def single_char(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("must be exactly one character")
        return value


class FilesSource(Strict):
    kind: Literal["files"] = "files"
    """`files` (the default): objects in Cloud Storage or local files."""
    uri: str
    """`gs://bucket/prefix/*.csv`, a local path or glob (relative to the pipelines file)."""
    format: FileFormat | None = None
    """Defaults to the file extension (.csv, .jsonl/.ndjson, .parquet, each optionally .gz)."""
    compression: Compression = "auto"
    """`auto` (from the extension and the bytes), `gzip` or `none`."""
    csv: CsvOptions = Field(default_factory=CsvOptions)
    """How CSV files are parsed."""
    columns: dict[str, ArrowTypeName] = Field(default_factory=dict)
    """Declared source column types; undeclared columns are inferred from the first block."""
    undeclared_columns: Literal["infer", "ignore"] = "infer"
    """`infer`: columns not under `columns` load too, typed from the first block of each file
    (in JSON lines a field first seen after it fails the file). `ignore`: only the declared
    columns load; JSON lines are then parsed by DuckDB's reader, at about half the CPU."""
    on_bad_rows: Literal["fail", "reject"] = "fail"
    """`fail`: a malformed row fails the file. `reject`: ragged CSV rows and values that do
    not convert to a declared type are kept in `<table>__rejects`; the rest loads."""
    max_rejected_rows: int = Field(default=10_000, ge=0)
    """With `reject`: a file with more bad rows than this fails instead (it is likely the
    wrong format, not a few bad rows)."""
    partition_columns: dict[str, ArrowTypeName] = Field(default_factory=dict)
    """Hive-style path segments (`dt=2026-11-20/region=eu/`) that become typed columns."""
    on_object_delete: Literal["ignore", "delete_rows"] = "ignore"
    """`delete_rows`: an `OBJECT_DELETE` notification (or `deleted` CloudEvent) removes the
    rows that object's generation loaded. A delete caused by an overwrite is always ignored:
    the new generation replaces the rows itself."""

    @model_validator(mode="after")
    def ignore_needs_columns(self) -> FilesSource:
        if self.undeclared_columns == "ignore" and not self.columns:
            raise ValueError("undeclared_columns: ignore needs the columns to load under columns")
        return self

    @field_validator("partition_columns")
    @classmethod
    def partition_identifiers(cls, value: dict[str, ArrowTypeName]) -> dict[str, ArrowTypeName]:
        for name in value:
            check_identifier(name)
        return value

    @field_validator("uri")
    @classmethod
    def uri_shape(cls, value: str) -> str:
        if is_gcs(value):
            try:
                bucket, _ = split_gs_uri(value)
            except ConfigError as error:
                raise ValueError(error.message) from None
            if not re.match(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$", bucket):
                raise ValueError(f"'{bucket}' is not a valid GCS bucket name")
        elif "://" in value:
            raise ValueError("only gs:// URIs and local paths are supported")
        return value


class ApiAuth(Strict):
    type: Literal["bearer", "api_key", "http_basic"]
    """How the API authenticates: `bearer` (token header), `api_key` (a header or query parameter),
    or `http_basic`."""
    token_env: str | None = None
    """bearer: env var holding the token; api_key: env var holding the key."""
    name: str = "Authorization"
    """api_key: header or query parameter name."""
    location: Literal["header", "query"] = "header"
    """api_key: send the key as a `header` or a `query` parameter."""
    username_env: str | None = None
    """http_basic: env var holding the user name."""
    password_env: str | None = None
    """http_basic: env var holding the password."""

    @model_validator(mode="after")
    def secrets_named(self) -> ApiAuth:
        if self.type in ("bearer", "api_key") and not self.token_env:
            raise ValueError(f"auth type '{self.type}' needs token_env")
        if self.type == "http_basic" and not (self.username_env and self.password_env):
            raise ValueError("auth type 'http_basic' needs username_env and password_env")
        return self


class ApiIncremental(Strict):
    cursor_path: str
    """Field of each record that orders it (e.g. `updated_at`)."""
    param: str
    """Query parameter that receives the last seen value."""
    initial_value: Any = None
    """The cursor value of the very first run (later runs resume from the last value seen)."""


class ApiSource(Strict):
    kind: Literal["api"] = "api"
    """`api`: an HTTP API read with dlt's REST client."""
    base_url: str
    """The API's root URL (`https://api.example.com/v1`); credentials go only to this origin."""
    path: str = ""
    """The resource path under `base_url` (`/rates`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Query parameters sent with every request (a run may override them, never the incremental
    cursor)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers (no secrets: use `auth`)."""
    auth: ApiAuth | None = None
    """How to authenticate; the secrets stay in env vars named here."""
    paginator: dict[str, Any] | Literal["auto", "single_page"] = "auto"
    """dlt paginator config, e.g. `{type: json_link, next_url_path: next}`."""
    data_selector: str | None = None
    """JSONPath to the records in each page (e.g. `data.items`)."""
    incremental: ApiIncremental | None = None
    """Load only what changed since the last run, by a cursor field of the records."""
    timeout_seconds: float = 60.0
    """Seconds to wait for each response."""
    max_attempts: int = 5
    """Attempts per request on 429/5xx/network errors (Retry-After is honoured)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Private/loopback hosts this source may reach anyway (tests, internal APIs)."""

    @field_validator("base_url")
    @classmethod
    def http_only(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value


def _source_kind(value: Any) -> str:
    """`kind` may be left out for file sources, the common case."""
    if isinstance(value, dict):
        return str(value.get("kind", "files"))
    return str(getattr(value, "kind", "files"))


SourceSpec = Annotated[
    Annotated[FilesSource, Tag("files")] | Annotated[ApiSource, Tag("api")],
    Discriminator(_source_kind),
]


class RenameStep(Strict):
    rename: dict[str, str]
    """Old column name -> new name."""


class SelectStep(Strict):
    select: list[str]
    """The columns to keep, in this order; the others are dropped."""


class DropStep(Strict):
    drop: list[str]
    """Columns to remove."""


class CastStep(Strict):
    cast: dict[str, ArrowTypeName]
    """Column -> type (string int64 int32 float64 bool timestamp date decimal)."""


class FilterStep(Strict):
    filter: str
    """A pandas `DataFrame.query` expression; rows where it is true are kept."""


class DeriveStep(Strict):
    derive: dict[str, str]
    """New column -> pandas `DataFrame.eval` expression."""


class DedupeStep(Strict):
    dedupe: list[str]
    """Columns that identify a row: duplicates within a batch are dropped."""
    keep: Literal["first", "last"] = "last"
    """Which duplicate stays: the `first` or the `last` seen."""


class FillNullsStep(Strict):
    fill_nulls: dict[str, Any]
    """Column -> the value that replaces its nulls."""


class TimestampFormat(Strict):
    format: str | None = None
    """strftime format; None lets pandas infer ISO 8601."""
    utc: bool = True
    """Convert to UTC (naive values are taken as UTC)."""


class ParseTimestampsStep(Strict):
    parse_timestamps: dict[str, TimestampFormat | str | None]
    """Column -> a strftime format, `{format, utc}`, or null (ISO 8601)."""


class FunctionStep(Strict):
    function: str
    """`module:function` taking and returning a DataFrame."""

    @field_validator("function")
    @classmethod
    def dotted(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", value):
            raise ValueError("must look like 'package.module:function'")
        return value


STEP_KINDS: dict[str, type[Strict]] = {
    "rename": RenameStep,
    "select": SelectStep,
    "drop": DropStep,
    "cast": CastStep,
    "filter": FilterStep,
    "derive": DeriveStep,
    "dedupe": DedupeStep,
    "fill_nulls": FillNullsStep,
    "parse_timestamps": ParseTimestampsStep,
    "function": FunctionStep,
}
"""A transform step is a mapping whose step key names its kind (`- filter: "x > 0"`)."""


def _step_kind(value: Any) -> str | None:
    """The step key of a step (`dedupe` in `{keep: first, dedupe: [id]}`); an unknown key is
    returned as it is, so the error can name it."""
    if isinstance(value, BaseModel):
        return next((kind for kind, cls in STEP_KINDS.items() if isinstance(value, cls)), None)
    if isinstance(value, dict) and value:
        keys = [str(key) for key in value]
        return next((key for key in keys if key in STEP_KINDS), keys[0])
    return None


TransformStep = Annotated[
    Annotated[RenameStep, Tag("rename")]
    | Annotated[SelectStep, Tag("select")]
    | Annotated[DropStep, Tag("drop")]
    | Annotated[CastStep, Tag("cast")]
    | Annotated[FilterStep, Tag("filter")]
    | Annotated[DeriveStep, Tag("derive")]
    | Annotated[DedupeStep, Tag("dedupe")]
    | Annotated[FillNullsStep, Tag("fill_nulls")]
    | Annotated[ParseTimestampsStep, Tag("parse_timestamps")]
    | Annotated[FunctionStep, Tag("function")],
    Discriminator(
        _step_kind,
        custom_error_type=UNKNOWN_ENTRY,
        custom_error_message="unknown transform step",
        custom_error_context={"noun": "transform step"},
    ),
]


class RangeBound(Strict):
    min: float | None = None
    """The smallest value allowed (inclusive)."""
    max: float | None = None
    """The largest value allowed (inclusive)."""


class Freshness(Strict):
    column: str
    """A timestamp column of the rows."""
    max_age_hours: float = Field(gt=0)
    """Its newest value may be at most this many hours old."""


class ChecksSpec(Strict):
    """Data-quality gates, run on the transformed rows of each file before anything commits."""

    not_null: list[str] = Field(default_factory=list)
    """Columns that must have a value in every row."""
    unique: list[str] = Field(default_factory=list)
    """Columns that together are unique within each file."""
    accepted_values: dict[str, list[Any]] = Field(default_factory=dict)
    """Column -> the only values it may hold."""
    range: dict[str, RangeBound] = Field(default_factory=dict)
    """Column -> inclusive `min` and/or `max` its values must lie within."""
    min_rows: int = Field(default=0, ge=0)
    """Per file (per run for API sources)."""
    freshness: Freshness | None = None
    """The newest value of a timestamp column must be at most this old."""
    quarantine_prefix: str | None = None
    """A failing file is copied here (`gs://bucket/prefix/` or a local folder) with the reason."""


class RawZoneSpec(Strict):
    """Keep every input untouched, so any load can be replayed (`main.py replay`)."""

    prefix: str
    """`gs://raw-bucket/raw` or a local folder: inputs land under
    `<prefix>/pipeline=<name>/dt=<YYYY-MM-DD>/...` before they are transformed."""


class CdcSpec(Strict):
    """Change data capture: one column says what happened to the row's key."""

    operation_column: str
    """The column holding the operation (`op`, `_change_type`, ...)."""
    delete_values: list[str] = Field(default_factory=lambda: ["d", "D", "delete", "DELETE"])
    """Operation values that delete the key; any other value upserts it."""
    deletes: Literal["hard", "soft"] = "hard"
    """`hard`: the key's row is removed (a tombstone in `<table>__tombstones` keeps a late,
    older change from bringing it back). `soft`: the row stays, with `_ferry_deleted_at` set."""

    @field_validator("operation_column")
    @classmethod
    def operation_identifier(cls, value: str) -> str:
        return check_identifier(value)

    @field_validator("delete_values")
    @classmethod
    def some_delete_values(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one operation value that deletes")
        return value


class DestinationSpec(Strict):
    table: str
    """The destination table (letters, digits, underscore)."""
    write_disposition: Literal["append", "replace", "merge"] = "append"
    """`append`: rows are added (a file loaded again replaces its own rows); `replace`: the table
    becomes what the run read; `merge`: rows are upserted by `primary_key` (or partitions by
    `merge_key`)."""
    primary_key: list[str] = Field(default_factory=list)
    """Merge: the columns identifying a row; the latest change per key wins."""
    merge_key: list[str] = Field(default_factory=list)
    """Merge: the columns whose values' rows are replaced as a whole (partition replace,
    unordered)."""
    partition: str | None = None
    """BigQuery: a DATE/TIMESTAMP column to partition by (ignored on DuckDB)."""
    cluster: list[str] = Field(default_factory=list)
    """BigQuery: up to four columns to cluster by (ignored on DuckDB)."""
    schema_contract: Literal["evolve", "freeze"] = "evolve"
    """`evolve`: new columns are added; `freeze`: a new column or type fails the run."""
    sequence: str | None = None
    """Merge: the column that orders changes to a key (`updated_at`, an LSN). Default: the
    object's generation (the latest upload wins). A change older than what the table holds for
    its key changes nothing, whatever order files arrive in."""
    cdc: CdcSpec | None = None
    """Merge: the operation column and the values that delete a key."""

    @field_validator("table")
    @classmethod
    def table_identifier(cls, value: str) -> str:
        return check_identifier(value)

    @field_validator("primary_key", "merge_key", "cluster")
    @classmethod
    def column_identifiers(cls, value: list[str]) -> list[str]:
        return [check_identifier(column) for column in value]

    @field_validator("partition", "sequence")
    @classmethod
    def optional_identifier(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value)

    @model_validator(mode="after")
    def keys_fit_disposition(self) -> DestinationSpec:
        if self.write_disposition == "merge" and not (self.primary_key or self.merge_key):
            raise ValueError("write_disposition 'merge' needs primary_key or merge_key")
        if len(self.cluster) > 4:
            raise ValueError("BigQuery allows at most four cluster columns")
        for option in ("sequence", "cdc"):
            if getattr(self, option) is None:
                continue
            if self.write_disposition != "merge" or not self.primary_key or self.merge_key:
                raise ValueError(
                    f"{option} orders changes per key: it needs write_disposition 'merge' with "
                    "primary_key (and no merge_key)"
                )
        if self.cdc is not None and self.cdc.operation_column in self.primary_key:
            raise ValueError("cdc.operation_column cannot be part of the primary_key")
        return self

    @property
    def ordered(self) -> bool:
        """Merges by key in sequence order (every file merge pipeline with a primary key)."""
        return self.write_disposition == "merge" and bool(self.primary_key) and not self.merge_key


class PipelineSpec(Strict):
    name: str
    """The pipeline's name (lowercase letters, digits, `-`, `_`): `ferry run NAME`."""
    description: str = ""
    """Free text for people."""
    source: SourceSpec
    """Where the rows come from: files (`kind: files`, the default) or an HTTP API (`kind: api`)."""
    transform: list[TransformStep] = Field(default_factory=list)
    """Steps applied in order to every batch; each is a mapping with one step key (`filter:`,
    `rename:`, ...)."""
    checks: ChecksSpec = Field(default_factory=ChecksSpec)
    """Data-quality gates on each file's transformed rows; a failing file loads nothing."""
    raw: RawZoneSpec | None = None
    """Keep every input untouched in a raw zone, so loads can be replayed."""
    destination: DestinationSpec
    """The table the rows land in and how they are written."""

    @property
    def removes_deleted_rows(self) -> bool:
        """An OBJECT_DELETE of one of its objects removes that object's rows."""
        return (
            isinstance(self.source, FilesSource) and self.source.on_object_delete == "delete_rows"
        )

    @model_validator(mode="after")
    def ordering_needs_files(self) -> PipelineSpec:
        destination = self.destination
        if isinstance(self.source, ApiSource) and (destination.sequence or destination.cdc):
            raise ValueError(
                "destination.sequence and destination.cdc need a files source (API rows have "
                "no object lineage to order by)"
            )
        return self

    @field_validator("name")
    @classmethod
    def name_shape(cls, value: str) -> str:
        if not PIPELINE_NAME.match(value):
            raise ValueError("use lowercase letters, digits, '-' or '_', starting with a letter")
        return value


class PipelinesFile(Strict):
    pipelines: list[PipelineSpec]
    """The pipelines: each reads one source into one table."""
    models: list[ModelSpec] = Field(default_factory=list)
    """SQL models built in the destination after loads (core/model_spec.py)."""

    @model_validator(mode="after")
    def unique_names(self) -> PipelinesFile:
        seen: set[str] = set()
        for pipeline in self.pipelines:
            if pipeline.name in seen:
                raise ValueError(f"pipeline name '{pipeline.name}' is declared twice")
            seen.add(pipeline.name)
        return self

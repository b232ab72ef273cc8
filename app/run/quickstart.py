"""Your own file without writing YAML first: `ferry load` and `ferry init`.

`load` builds a one-pipeline catalog in memory and runs it through the normal runner (the
same readers, types, lineage and ledger as any pipeline); `init` samples a file with the same
readers and writes a commented pipelines file that `ferry validate` accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from app.run.catalog import Catalog
from app.run.request import ObjectRef
from core.errors import ConfigError
from core.settings import Settings
from core.spec import ArrowTypeName, DestinationSpec, FilesSource, PipelineSpec, check_identifier
from core.uris import is_gcs

SAMPLE_BYTES = 1 << 20
"""`init` infers the columns from the first MiB of the first matching file."""


def pipeline_name(table: str) -> str:
    """A valid pipeline name for a table (`Orders_2026` -> `orders_2026`)."""
    name = re.sub(r"[^a-z0-9_-]", "_", table.lower()).lstrip("_-0123456789")
    return name[:63] or "load"


def source_uri(path: str, base_dir: Path) -> str:
    """A gs:// URI as it is; a local path or glob made absolute against `base_dir`."""
    if is_gcs(path) or Path(path).is_absolute():
        return path
    return str(base_dir / path)


def load_catalog_for(
    paths: Sequence[str], table: str, base_dir: Path
) -> tuple[Catalog, tuple[ObjectRef, ...]]:
    """A catalog holding one append pipeline from `paths` to `table`, and the objects to load.

    One path is the pipeline's pattern (a file, folder or glob). Several (a glob the shell
    expanded) are local files: the pattern is their common folder, narrowed to exactly them.
    """
    try:
        check_identifier(table)
    except ValueError as error:
        raise ConfigError(f"--table: {error}") from None
    uris = [source_uri(path, base_dir) for path in paths]
    objects: tuple[ObjectRef, ...] = ()
    pattern = uris[0]
    if len(uris) > 1:
        if any(is_gcs(uri) for uri in uris):
            raise ConfigError("give one gs:// pattern (quoted, so the shell leaves it alone)")
        pattern = os.path.commonpath([str(Path(uri).parent) for uri in uris]) + "/"
        objects = tuple(ObjectRef(uri=str(Path(uri).resolve())) for uri in uris)
    spec = PipelineSpec(
        name=pipeline_name(table),
        description=f"ferry load {' '.join(paths)} --table {table}",
        source=FilesSource(uri=pattern),
        destination=DestinationSpec(table=table),
    )
    return Catalog(pipelines={spec.name: spec}, base_dir=base_dir), objects


def sample_columns(
    path: str, settings: Settings, base_dir: Path
) -> tuple[str, dict[str, ArrowTypeName]]:
    """The first file `path` matches and the column types ferry's reader infers from it."""
    from sources.files import list_objects, read_batches
    from sources.files.storage import storage_client_factory

    uri = source_uri(path, base_dir)
    client = storage_client_factory(settings)
    first = list_objects(uri, base_dir=base_dir, storage_client=client)[0]
    source = FilesSource(uri=first.uri)
    batches = read_batches(
        first,
        source,
        storage_client=client,
        batch_bytes=SAMPLE_BYTES,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
        max_columns=settings.max_columns,
    )
    batch = next(iter(batches), None)
    if batch is None:
        raise ConfigError(f"'{first.uri}' has no rows to infer columns from")
    return first.uri, {field.name: type_name(field.type) for field in batch.schema}


def type_name(arrow_type: pa.DataType) -> ArrowTypeName:
    """The declared-type name (`source.columns`) closest to an inferred Arrow type."""
    if pa.types.is_integer(arrow_type):
        return "int64"
    if pa.types.is_floating(arrow_type):
        return "float64"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_decimal(arrow_type):
        return "decimal"
    return "string"


def pipelines_yaml(
    path: str, table: str, columns: dict[str, ArrowTypeName], sampled: str, output_dir: Path
) -> str:
    """A commented pipelines file for `path`, with the columns inferred from `sampled`."""
    uri = path if is_gcs(path) else _relative(source_uri(path, Path.cwd()), output_dir)
    entries = [f"{_yaml_key(name)}: {kind}" for name, kind in columns.items()]
    width = max((len(entry) for entry in entries), default=0)
    column_lines = "\n".join(f"        {entry.ljust(width)}   # inferred" for entry in entries)
    first = next(iter(columns), "id")
    number = next((n for n, kind in columns.items() if kind in ("int64", "float64")), None)
    example = f"{number} > 0" if number else f"{first} != ''"
    return f"""\
# Pipelines file written by `ferry init {path}`.
# Check it: ferry validate FILE        Run it: ferry --pipelines FILE run {pipeline_name(table)}
# Every field is described in the JSON Schema: `ferry schema` (see the README to point
# your editor at it).
pipelines:
  - name: {pipeline_name(table)}
    description: "{table} from {path}"
    source:
      # a local path or glob (relative to this file), or gs://bucket/prefix/*.csv
      uri: "{uri}"
      # the columns and types ferry's reader inferred from {Path(sampled).name}; a declared
      # type is enforced on every file (string int64 int32 float64 bool timestamp date
      # decimal), and undeclared columns are inferred per file. Delete what you do not need.
      columns:
{column_lines or "        {}"}
      # fail: a malformed row fails the file. reject: bad rows go to {table}__rejects.
      on_bad_rows: fail
    # transform:                       # steps applied in order to every batch, e.g.
    #   - filter: "{example}"   # the rows where this expression is true stay
    #   - rename: {{{first}: new_name}}
    destination:
      table: {table}
      # append:  every file's rows are added; loading a file again replaces that file's own
      #          rows (exactly once per file generation, kept in the _ferry_objects ledger)
      # replace: the table becomes exactly what the run read
      # merge:   rows are upserted by primary_key (the latest change per key wins)
      write_disposition: append
      # primary_key: [{first}]            # needed by merge
"""


def _relative(uri: str, output_dir: Path) -> str:
    try:
        return str(Path(uri).relative_to(output_dir.resolve()))
    except ValueError:
        return uri


def _yaml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f'"{name}"'

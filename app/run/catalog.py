"""Load and validate the pipelines file; find a pipeline by name or by the object it reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.models.compile import ModelSet, compile_models
from app.run.functions import check_functions
from core.errors import ConfigError, RequestError, UnknownPipelineError
from core.globs import matches
from core.spec import FilesSource, PipelinesFile, PipelineSpec


@dataclass(frozen=True)
class Catalog:
    pipelines: dict[str, PipelineSpec]
    base_dir: Path
    """Relative local paths in the file resolve against this folder."""
    models: ModelSet = field(default_factory=ModelSet)
    """Post-load SQL models, validated (parsed, translatable, tables known, no cycle)."""

    def get(self, name: str) -> PipelineSpec:
        try:
            return self.pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise UnknownPipelineError(
                f"no pipeline named '{name}' (known: {known})", pipeline=name
            ) from None

    def match_uri(self, uri: str) -> list[PipelineSpec]:
        """Pipelines whose file pattern covers `uri` (e.g. gs://bucket/path/file.csv)."""
        return [
            spec
            for spec in self.pipelines.values()
            if isinstance(spec.source, FilesSource) and matches(spec.source.uri, uri)
        ]

    def pipeline_for_uri(self, uri: str) -> PipelineSpec:
        matches = self.match_uri(uri)
        if not matches:
            raise UnknownPipelineError(f"no pipeline's source pattern matches '{uri}'")
        if len(matches) > 1:
            names = ", ".join(spec.name for spec in matches)
            raise RequestError(f"'{uri}' matches several pipelines ({names}); name one")
        return matches[0]


def load_catalog(path: Path) -> Catalog:
    """Parse and validate the whole file; every problem names the pipeline and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"pipelines file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"pipelines file {path} is not valid YAML: {error}") from None
    try:
        parsed = PipelinesFile.model_validate(raw)
    except ValidationError as error:
        problems = [describe_problem(raw, e["loc"], e["msg"]) for e in error.errors()]
        raise ConfigError(
            f"pipelines file {path} is invalid:\n  " + "\n  ".join(problems),
            details={"problems": problems},
        ) from None
    for spec in parsed.pipelines:
        check_functions(spec.name, spec.transform)
    base_dir = path.resolve().parent
    loaded_tables = {spec.destination.table for spec in parsed.pipelines}
    return Catalog(
        pipelines={spec.name: spec for spec in parsed.pipelines},
        base_dir=base_dir,
        models=compile_models(parsed.models, loaded_tables, base_dir),
    )


def describe_problem(raw: Any, loc: tuple[int | str, ...], message: str) -> str:
    """'pipeline 'orders', field destination.write_disposition: Input should be ...'"""
    if len(loc) >= 2 and loc[0] == "pipelines" and isinstance(loc[1], int):
        entry = raw["pipelines"][loc[1]] if isinstance(raw, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        who = f"pipeline '{name}'" if name else f"pipeline #{loc[1] + 1}"
        # drop pydantic's union-member tags (e.g. 'files', 'RenameStep') from the path
        path = ".".join(str(part) for part in loc[2:] if not _is_union_tag(part))
        return f"{who}, field {path or '(entry)'}: {message}"
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        entry = raw["models"][loc[1]] if isinstance(raw, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        who = f"model '{name}'" if name else f"model #{loc[1] + 1}"
        path = ".".join(str(part) for part in loc[2:])
        return f"{who}, field {path or '(entry)'}: {message}"
    return f"field {'.'.join(str(p) for p in loc) or '(top level)'}: {message}"


def _is_union_tag(part: int | str) -> bool:
    return isinstance(part, str) and (part[:1].isupper() or part in ("files", "api"))

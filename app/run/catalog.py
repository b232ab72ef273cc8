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
from core.model_spec import ModelSpec
from core.problems import Who, problems_of
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
    """Parse and validate the whole file. Every problem is reported at once (the pipelines',
    their functions' and the models'), each naming the pipeline or model and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"pipelines file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"pipelines file {path} is a directory, not a YAML file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"pipelines file {path} is not valid YAML: {error}") from None
    base_dir = path.resolve().parent
    problems: list[str] = []
    try:
        parsed = PipelinesFile.model_validate(raw)
    except ValidationError as error:
        problems += [str(p) for p in problems_of(error, model=PipelinesFile, who=_who(raw))]
        pipelines, models = _valid_entries(raw)
    else:
        pipelines, models = list(parsed.pipelines), list(parsed.models)
    for spec in pipelines:
        try:
            check_functions(spec.name, spec.transform)
        except ConfigError as error:
            problems.append(f"pipeline '{spec.name}', {error.message}")
    loaded_tables = {spec.destination.table for spec in pipelines}
    model_set = _compiled(models, loaded_tables, base_dir, problems)
    if problems:
        raise ConfigError(
            f"pipelines file {path} is invalid:\n  " + "\n  ".join(problems),
            details={"problems": problems},
        )
    return Catalog(
        pipelines={spec.name: spec for spec in pipelines},
        base_dir=base_dir,
        models=model_set,
    )


def _compiled(
    models: list[ModelSpec], loaded_tables: set[str], base_dir: Path, problems: list[str]
) -> ModelSet:
    """The models compiled, every model's problem added to `problems`. compile_models stops
    at the first problem, so the model it names is set aside (its name still counts as a
    table, so the models reading it are not blamed too) and the rest compiled again."""
    remaining: list[ModelSpec] = list(models)
    set_aside: set[str] = set()
    while remaining:
        try:
            return compile_models(remaining, loaded_tables | set_aside, base_dir)
        except ConfigError as error:
            problems.append(error.message)
            name = error.details.get("model")
            if name not in {spec.name for spec in remaining}:
                break  # a problem of the models together (a cycle): reported, nothing more
            set_aside.add(name)
            remaining = [spec for spec in remaining if spec.name != name]
    return ModelSet()


def _valid_entries(raw: Any) -> tuple[list[PipelineSpec], list[ModelSpec]]:
    """The entries that are valid on their own, so their other problems (functions, model
    SQL) are reported along with the file's."""
    pipelines: dict[str, PipelineSpec] = {}
    models: list[ModelSpec] = []
    if not isinstance(raw, dict):
        return [], models
    for entry in _entries(raw, "pipelines"):
        try:
            spec = PipelineSpec.model_validate(entry)
        except ValidationError:
            continue
        pipelines.setdefault(spec.name, spec)  # a name declared twice is reported already
    for entry in _entries(raw, "models"):
        try:
            models.append(ModelSpec.model_validate(entry))
        except ValidationError:
            continue
    return list(pipelines.values()), models


def _entries(raw: dict[str, Any], key: str) -> list[Any]:
    entries = raw.get(key)
    return entries if isinstance(entries, list) else []


def _who(raw: Any) -> Who:
    """'pipeline 'orders'' (or 'pipeline #2' when it has no name) for a location in the file."""

    def who(loc: tuple[int | str, ...]) -> tuple[str, int]:
        if len(loc) >= 2 and loc[0] in ("pipelines", "models") and isinstance(loc[1], int):
            entries = raw.get(str(loc[0])) if isinstance(raw, dict) else None
            entry = entries[loc[1]] if isinstance(entries, list) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            noun = "pipeline" if loc[0] == "pipelines" else "model"
            return (f"{noun} '{name}'" if name else f"{noun} #{loc[1] + 1}"), 2
        return "", 0

    return who

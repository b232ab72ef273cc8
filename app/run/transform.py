"""Declarative steps, compiled once per run and applied in order to each batch. Pure: no I/O.

Each step has its pandas form (the reference, and the only form of `function:` steps and
of expressions Arrow cannot express) and, where possible, an Arrow form (`arrow_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import pyarrow as pa

from app.run.arrow_steps import TableStep, compile_table_step
from app.run.functions import import_function
from core.arrow_types import ARROW_TYPES
from core.errors import ConfigError, TransformError
from core.spec import (
    ArrowTypeName,
    CastStep,
    DedupeStep,
    DeriveStep,
    DropStep,
    FillNullsStep,
    FilterStep,
    FunctionStep,
    ParseTimestampsStep,
    RenameStep,
    SelectStep,
    TimestampFormat,
    TransformStep,
)

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported where a pandas step runs: a run whose steps all compile to Arrow (and
# a server answering health checks) never pays its ~0.5 s import
Frame: TypeAlias = "pd.DataFrame"
StepFunction: TypeAlias = Callable[["pd.DataFrame"], "pd.DataFrame"]


def arrow_type(name: ArrowTypeName) -> pa.DataType:
    return ARROW_TYPES[name]


@dataclass(frozen=True)
class CompiledStep:
    label: str
    """e.g. 'step 3 (cast)': how errors point at the step."""
    columns: tuple[str, ...]
    apply: StepFunction
    on_table: TableStep | None = None
    """The same step on an Arrow table, when Arrow can express it (no pandas round trip)."""


@dataclass(frozen=True)
class Transform:
    pipeline: str
    steps: tuple[CompiledStep, ...]

    def __call__(self, frame: Frame) -> Frame:
        """Every step in pandas (the reference behaviour)."""
        for step in self.steps:
            frame = self._pandas_step(step, frame)
        return frame

    def on_table(self, table: pa.Table) -> pa.Table:
        """Every step, Arrow where the step compiled to Arrow, pandas for the rest.

        Consecutive pandas steps share one conversion each way. pandas stays the reference:
        when an Arrow step cannot run on this data (or fails), the step runs in pandas, which
        either does what it always did or raises the step's TransformError.
        """
        frame: Frame | None = None
        for step in self.steps:
            if step.on_table is not None:
                if frame is not None:
                    table, frame = pa.Table.from_pandas(frame, preserve_index=False), None
                self._check_columns(step, table.column_names)
                try:
                    table = step.on_table(table)
                    continue
                except Exception:  # noqa: S110 - pandas runs the step and reports
                    pass
            if frame is None:
                import pandas as pd

                frame = table.to_pandas(types_mapper=pd.ArrowDtype)
            frame = self._pandas_step(step, frame)
        return table if frame is None else pa.Table.from_pandas(frame, preserve_index=False)

    def _check_columns(self, step: CompiledStep, have: Sequence[Any]) -> None:
        missing = [c for c in step.columns if c not in have]
        if missing:
            raise TransformError(
                f"{step.label}: column '{missing[0]}' not found "
                f"(have: {', '.join(map(str, have))})",
                pipeline=self.pipeline,
                details={"step": step.label, "column": missing[0]},
            )

    def _pandas_step(self, step: CompiledStep, frame: Frame) -> Frame:
        self._check_columns(step, list(frame.columns))
        try:
            return step.apply(frame)
        except TransformError:
            raise
        except Exception as error:
            column = getattr(error, "ferry_column", None)
            where = f", column '{column}'" if column else ""
            raise TransformError(
                f"{step.label}{where}: {type(error).__name__}: {error}",
                pipeline=self.pipeline,
                details={"step": step.label, "column": column},
            ) from error

    @property
    def is_identity(self) -> bool:
        return not self.steps


def compile_transform(pipeline: str, steps: Sequence[TransformStep]) -> Transform:
    """Turn declared steps into callables once per run (imports functions up front)."""
    compiled = []
    for number, step in enumerate(steps, start=1):
        kind, columns, apply = _compile_step(pipeline, number, step)
        label = f"step {number} ({kind})"
        compiled.append(CompiledStep(label, columns, apply, compile_table_step(step)))
    return Transform(pipeline, tuple(compiled))


def _compile_step(
    pipeline: str, number: int, step: TransformStep
) -> tuple[str, tuple[str, ...], StepFunction]:
    if isinstance(step, RenameStep):
        mapping = dict(step.rename)
        return "rename", tuple(mapping), lambda f: f.rename(columns=mapping)
    if isinstance(step, SelectStep):
        chosen = list(step.select)
        return "select", tuple(chosen), lambda f: f[chosen]
    if isinstance(step, DropStep):
        gone = list(step.drop)
        return "drop", tuple(gone), lambda f: f.drop(columns=gone)
    if isinstance(step, CastStep):
        return "cast", tuple(step.cast), _cast(step.cast)
    if isinstance(step, FilterStep):
        expression = step.filter
        return "filter", (), lambda f: _filter(f, expression)
    if isinstance(step, DeriveStep):
        return "derive", (), _derive(step.derive)
    if isinstance(step, DedupeStep):
        key = list(step.dedupe)
        keep = step.keep
        return "dedupe", tuple(key), lambda f: f.drop_duplicates(subset=key, keep=keep)
    if isinstance(step, FillNullsStep):
        values = dict(step.fill_nulls)
        return "fill_nulls", tuple(values), lambda f: f.fillna(values)
    if isinstance(step, ParseTimestampsStep):
        return "parse_timestamps", tuple(step.parse_timestamps), _parse_timestamps(step)
    if isinstance(step, FunctionStep):
        return "function", (), _import_function(pipeline, number, step.function)
    raise ConfigError(f"step {number}: unknown step {step!r}", pipeline=pipeline)


def _column_error(column: str, error: Exception) -> Exception:
    error.ferry_column = column  # type: ignore[attr-defined]
    return error


def _cast(types: dict[str, ArrowTypeName]) -> StepFunction:
    def apply(frame: Frame) -> Frame:
        frame = frame.copy(deep=False)
        for column, name in types.items():
            try:
                frame[column] = _cast_series(frame[column], arrow_type(name))
            except Exception as error:
                raise _column_error(column, error) from error
        return frame

    return apply


def _cast_series(series: pd.Series, target: pa.DataType) -> pd.Series:
    import pandas as pd

    if pa.types.is_timestamp(target) and not pd.api.types.is_datetime64_any_dtype(series):
        series = pd.to_datetime(series, utc=True)
    return series.astype(pd.ArrowDtype(target))


def _evaluate(frame: Frame, expression: str) -> Any:
    """`DataFrame.eval`; operators Arrow-backed columns lack (e.g. `%`) use numpy dtypes."""
    try:
        return frame.eval(expression)
    except NotImplementedError:
        return _numeric_as_numpy(frame).eval(expression)


def _numeric_as_numpy(frame: Frame) -> Frame:
    import pandas as pd

    numeric = {
        str(name): frame[name].convert_dtypes(dtype_backend="numpy_nullable")
        for name, dtype in frame.dtypes.items()
        if isinstance(dtype, pd.ArrowDtype)
        and (
            pa.types.is_integer(dtype.pyarrow_dtype)
            or pa.types.is_floating(dtype.pyarrow_dtype)
            or pa.types.is_boolean(dtype.pyarrow_dtype)
        )
    }
    return frame.assign(**numeric)


def _filter(frame: Frame, expression: str) -> Frame:
    import pandas as pd

    mask = _evaluate(frame, expression)
    if not isinstance(mask, pd.Series):
        raise ValueError(f"filter '{expression}' must evaluate to one boolean per row")
    # null comparisons (missing values) drop the row rather than fail the batch
    return frame[mask.fillna(False).astype(bool)]


def _derive(expressions: dict[str, str]) -> StepFunction:
    def apply(frame: Frame) -> Frame:
        frame = frame.copy(deep=False)
        for column, expression in expressions.items():
            try:
                frame[column] = _evaluate(frame, expression)
            except Exception as error:
                raise _column_error(column, error) from error
        return frame

    return apply


def _parse_timestamps(step: ParseTimestampsStep) -> StepFunction:
    formats: dict[str, TimestampFormat] = {
        column: spec if isinstance(spec, TimestampFormat) else TimestampFormat(format=spec)
        for column, spec in step.parse_timestamps.items()
    }

    def apply(frame: Frame) -> Frame:
        import pandas as pd

        frame = frame.copy(deep=False)
        for column, spec in formats.items():
            try:
                parsed = pd.to_datetime(frame[column], format=spec.format, utc=spec.utc)
            except Exception as error:
                raise _column_error(column, error) from error
            frame[column] = parsed
        return frame

    return apply


def _import_function(pipeline: str, number: int, target: str) -> StepFunction:
    function = import_function(pipeline, number, target)

    def apply(frame: Frame) -> Frame:
        import pandas as pd

        result = function(frame)
        if not isinstance(result, pd.DataFrame):
            raise TypeError(f"'{target}' returned {type(result).__name__}, not a DataFrame")
        return result

    return apply

"""Where models build: a sqlglot dialect, the configured dataset and (BigQuery) its project.

Engine-neutral: each engine folder's `models.warehouse(settings)` fills it in, so nothing here
asks which engine it is. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from sqlglot import exp

Relation = Literal["table", "view"]


@dataclass(frozen=True)
class Warehouse:
    """Where models build: the engine's sqlglot dialect and the configured dataset."""

    dialect: str
    dataset: str
    catalog: str | None = None
    """The dataset's parent in a qualified name (BigQuery: the project); None for none."""

    # sqlglot loads only when a model is built or validated (a faster cold start)
    def table(self, name: str) -> exp.Table:
        """`name` in the configured dataset, quoted."""
        from sqlglot import exp

        return exp.table_(name, db=self.dataset, catalog=self.catalog, quoted=True)

    def render(self, expression: exp.Expr) -> str:
        from sqlglot import ErrorLevel

        return expression.sql(dialect=self.dialect, unsupported_level=ErrorLevel.RAISE)

    def name(self, name: str) -> str:
        """`name` in the configured dataset, quoted and rendered."""
        return self.render(self.table(name))

    def create(self, name: str, select: exp.Query, kind: Relation) -> str:
        """`CREATE OR REPLACE <kind> name AS <select>`."""
        from sqlglot import exp

        create = exp.Create(
            this=self.table(name), kind=kind.upper(), expression=select, replace=True
        )
        return self.render(create)

"""Which incremental models may read only new loads, and the SELECT that does. Pure: no I/O.

An incremental model reads only the upstream rows of loads newer than its last build when
that gives the same rows as reading everything: its SELECT maps each row of one loaded table
to rows of its own (a projection, a filter, an UNNEST of the row's arrays), so the model over
old rows + new rows is the model over the old rows plus the model over the new rows. Anything
that combines rows (GROUP BY, aggregates, windows and QUALIFY, DISTINCT, LIMIT, a JOIN with a
table, subqueries, set operations) or depends on when it runs (CURRENT_DATE, RAND) does not;
nor does a model read from another model, whose rows carry no load id. ferry does the
filtering itself (the user writes plain SQL), so a filter can never be forgotten or wrong.
"""

from __future__ import annotations

import hashlib

from sqlglot import exp

from app.destinations.warehouse import Warehouse
from app.models.transpile import ModelQuery
from core.lineage import LOAD_ID_COLUMN
from core.model_spec import ModelSpec

MODEL_LOAD_ID_COLUMN = "_ferry_load_id"
"""On an incremental model's rows: the `_dlt_load_id` of the upstream row each came from.
The table's newest is what its last committed build read, kept in the same commit as the rows."""

# a new row's value would differ from an old row's rebuilt now (GENERATE_UUID is left alone:
# a row keeps the id its build gave it, which no rebuild could reproduce anyway)
_BY_TIME = (
    exp.CurrentDate,
    exp.CurrentDatetime,
    exp.CurrentTime,
    exp.CurrentTimestamp,
    exp.Rand,
)


def reads_whole(query: ModelQuery, models: frozenset[str]) -> str | None:
    """Why the model must read its upstream whole on every build (None: it may read only the
    rows of new loads). `models`: the names of every model (they have no load ids)."""
    tree = query.query
    if not isinstance(tree, exp.Select):
        return "it is a set operation (UNION, INTERSECT, EXCEPT)"
    if tree.find(exp.With):
        return "it has a WITH clause"
    if len(query.upstream) != 1:
        return f"it reads {len(query.upstream)} tables ({', '.join(sorted(query.upstream))})"
    (upstream,) = query.upstream
    if upstream in models:
        return f"it reads model {upstream}, whose rows carry no load id"
    stored = [t for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier)]
    if len(stored) > 1:
        return f"it reads {upstream} more than once"
    for node in tree.walk():
        problem = _combines_rows(node, tree)
        if problem:
            return problem
    return None


def _combines_rows(node: exp.Expr, root: exp.Select) -> str | None:
    if isinstance(node, exp.Select) and node is not root:
        return "it has a subquery"
    if isinstance(node, exp.Window):
        return "it has a window function (OVER, QUALIFY)"
    if isinstance(node, exp.AggFunc):
        return f"it has an aggregate ({node.sql_name()})"
    if isinstance(node, exp.Join) and not isinstance(node.this, exp.Unnest):
        return "it has a JOIN"
    if isinstance(node, _BY_TIME):
        return f"it calls {node.sql_name()}, which depends on when it runs"
    if node is root:
        for clause, what in _CLAUSES.items():
            if node.args.get(clause):
                return f"it has {what}"
    return None


_CLAUSES = {
    "group": "GROUP BY",
    "having": "HAVING",
    "qualify": "QUALIFY",
    "distinct": "DISTINCT",
    "limit": "LIMIT",
}


def incremental_select(
    query: ModelQuery, warehouse: Warehouse, after: str | None, upto: str | None
) -> exp.Query:
    """The model's SELECT over its upstream's rows loaded after `after` and up to `upto` (None:
    unbounded), with each row's upstream load id as `_ferry_load_id`. Only for a model
    `reads_whole` accepts."""
    select = query.qualified(warehouse)
    table = next(select.find_all(exp.Table))
    alias = table.alias_or_name
    source = table.copy()
    source.set("alias", None)
    rows = exp.select("*").from_(source)
    load_id = exp.column(LOAD_ID_COLUMN, quoted=True)
    if after is not None:
        rows = rows.where(exp.GT(this=load_id.copy(), expression=exp.Literal.string(after)))
    if upto is not None:
        rows = rows.where(exp.LTE(this=load_id.copy(), expression=exp.Literal.string(upto)))
    table.replace(rows.subquery(exp.to_identifier(alias, quoted=True)))
    if not isinstance(select, exp.Select):  # reads_whole refuses everything else
        raise TypeError(f"model {query.name} is not one SELECT")
    origin = exp.column(LOAD_ID_COLUMN, table=exp.to_identifier(alias, quoted=True), quoted=True)
    return select.select(exp.alias_(origin, MODEL_LOAD_ID_COLUMN, quoted=True), copy=False)


def output_names(select: exp.Query) -> list[str] | None:
    """The SELECT's column names as written; None when a `*` or an unnamed expression
    leaves them to the engine."""
    names = [projection.output_name for projection in select.selects]
    if any(p.is_star for p in select.selects) or not all(names) or len(set(names)) < len(names):
        return None
    return names


def definition_hash(spec: ModelSpec, query: ModelQuery, warehouse: Warehouse) -> str:
    """What the model's rows depend on besides its inputs: a change rebuilds it whole."""
    text = "\n".join([warehouse.render(query.qualified(warehouse)), ",".join(spec.unique_key)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]

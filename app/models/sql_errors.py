"""A model's SQL error pointed at the user's own SQL, not at the statement ferry ran.

The engine quotes the statement it ran (DuckDB's `LINE 1: CREATE OR REPLACE TABLE ... AS
SELECT ...` with a caret under the fault; BigQuery's `at [1:57]`): the translated, wrapped
SQL the user never wrote. This finds the name the engine complains about in the model's own
SQL and says which line of it holds that name.
"""

from __future__ import annotations

import re

from core.errors import FerryError

_DUCKDB_QUOTE = re.compile(r"\n*LINE (\d+): (?P<sql>[^\n]*)\n(?P<pad> *)\^+", re.DOTALL)
_BIGQUERY_AT = re.compile(r" at \[(\d+):(\d+)\]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED = re.compile(r"""["'`]([A-Za-z_][A-Za-z0-9_.]*)["'`]""")


def pointed_at_sql(error: FerryError, sql: str) -> FerryError:
    """`error` with the engine's quote of its own statement replaced by the line of `sql`
    (the model as written) that holds the name it complains about, when one does."""
    message = error.message
    name = None
    quoted = _DUCKDB_QUOTE.search(message)
    if quoted:
        column = len(quoted.group("pad")) - len(f"LINE {quoted.group(1)}: ")
        found = _NAME.match(quoted.group("sql"), max(column, 0))
        name = found.group(0) if found else None
        message = message[: quoted.start()] + message[quoted.end() :]
    else:
        message = _BIGQUERY_AT.sub("", message)
    names = [name] if name else [q.split(".")[-1] for q in _QUOTED.findall(message)]
    message = " ".join(message.split())
    for candidate in names:
        line = _line_of(candidate, sql)
        if line is not None:
            number, text = line
            message = f"{message.rstrip('.!')} (line {number} of its SQL: {text.strip()})"
            break
    error.message = message
    return error


def _line_of(name: str, sql: str) -> tuple[int, str] | None:
    pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", re.IGNORECASE)
    for number, text in enumerate(sql.splitlines(), start=1):
        if pattern.search(text.split("--", 1)[0]):
            return number, text
    return None

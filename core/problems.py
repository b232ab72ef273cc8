"""The one way a pydantic `ValidationError` becomes sentences a person can act on.

Every place that validates input (the pipelines file, the settings, request bodies, push
envelopes) formats pydantic's errors here, so they all read alike (`problems_of` for files
and settings, by field path; `labelled_text` for request bodies, by the sender's names):

- a path with 1-based positions (`transform[2].cast`), without pydantic's union-member tags;
- an unknown key or step names the nearest valid name ("unknown key 'delimitr' in source;
  did you mean 'delimiter'?", difflib);
- pydantic's "Value error, " prefix dropped: a validator's message is already a sentence.

Pure: imports nothing of ferry's.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Loc = tuple[int | str, ...]
Who = Callable[[Loc], tuple[str, int]]
"""Names the entry a problem belongs to ("pipeline 'orders'") and how many leading parts of
the location that name stands for."""

COMPLETE: Final = "ferry_complete"
"""A custom error (PydanticCustomError) whose message names its field already."""
PROBLEM: Final = "ferry_problem"
"""A custom error whose message follows the field's label."""
UNKNOWN_ENTRY: Final = "unknown_entry"
"""The error type of a discriminated union whose tag names no member (see core.spec)."""
_PREFIXES: Final = ("Value error, ", "Assertion failed, ")


@dataclass(frozen=True)
class Problem:
    """One problem: where (an entry and a field path, either may be empty) and what."""

    who: str
    field: str
    message: str

    def __str__(self) -> str:
        where = ", ".join(
            part for part in (self.who, f"field {self.field}" if self.field else "") if part
        )
        return f"{where}: {self.message}" if where else self.message


def problems_of(
    error: ValidationError | Iterable[ErrorDetails],
    *,
    model: type[BaseModel] | None = None,
    who: Who | None = None,
) -> list[Problem]:
    """Every problem pydantic found, one per error, in the order pydantic found them.

    `model` is what was validated: with it, unknown keys get a "did you mean" and union tags
    are left out of the path. `who` names the entry a location belongs to.
    """
    details = list(error.errors(include_url=False) if isinstance(error, ValidationError) else error)
    # `tabel:` is one typo: "unknown key 'tabel'; did you mean 'table'?" says it all, so the
    # "field table: Field required" it caused is left out
    meant = {
        (*detail["loc"][:-1], name)
        for detail in details
        if detail["type"] == "extra_forbidden" and detail["loc"]
        for name in [_meant(str(detail["loc"][-1]), _walk(model, tuple(detail["loc"]), 0)[1])]
        if name
    }
    return [
        _problem(detail, model, who)
        for detail in details
        if not (detail["type"] == "missing" and tuple(detail["loc"]) in meant)
    ]


def problem_text(
    error: ValidationError | Iterable[ErrorDetails],
    *,
    model: type[BaseModel] | None = None,
    who: Who | None = None,
    separator: str = "; ",
) -> str:
    return separator.join(str(problem) for problem in problems_of(error, model=model, who=who))


def labelled_text(
    error: ValidationError,
    *,
    label: str | None = None,
    describe: Callable[[object], str] = repr,
    separator: str = "; ",
) -> str:
    """Every problem as a sentence about a labelled value ("'message' must be an object, got
    null"): for request bodies, whose fields are named as the sender wrote them. `label`
    names the value (default: the field, quoted); `describe` shows a received value."""
    return separator.join(
        _labelled(detail, label, describe) for detail in error.errors(include_url=False)
    )


def _labelled(detail: ErrorDetails, label: str | None, describe: Callable[[object], str]) -> str:
    kind = detail["type"]
    if kind == COMPLETE:
        return detail["msg"]
    if label is None:
        leaf = next((str(part) for part in reversed(detail["loc"]) if isinstance(part, str)), "")
        label = f"'{leaf}'" if leaf else "the value"
    if kind == PROBLEM:
        return f"{label} {detail['msg']}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{label} must be an object, got {describe(detail['input'])}"
    if kind == "missing":
        return f"{label} is missing"
    if kind == "string_type":
        return f"{label} must be a string, got {describe(detail['input'])}"
    return f"{label}: {message_of(detail)}"


def nearest(name: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'filter'?" for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _meant(key: str, parent: Any) -> str | None:
    """The field of `parent` an unknown `key` was probably meant to be."""
    close = difflib.get_close_matches(key, _fields(parent), n=1, cutoff=0.6)
    return close[0] if close else None


def _suggestion(key: str, parent: Any) -> str:
    """The nearest field of `parent`, else of a section inside it (`delimitr` in a source:
    'csv.delimiter')."""
    direct = nearest(key, _fields(parent))
    if direct:
        return direct
    nested = {
        f"{field}.{inner}": inner
        for field, section in _field_types(parent)
        for inner in _fields(section)
    }
    close = difflib.get_close_matches(key, sorted(set(nested.values())), n=1, cutoff=0.75)
    if not close:
        return ""
    return f"; did you mean '{next(q for q, inner in nested.items() if inner == close[0])}'?"


def message_of(detail: ErrorDetails) -> str:
    """pydantic's message without the prefixes it adds to a validator's own sentence."""
    message = detail["msg"]
    for prefix in _PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _problem(detail: ErrorDetails, model: type[BaseModel] | None, who: Who | None) -> Problem:
    loc = tuple(detail["loc"])
    name, skip = who(loc) if who else ("", 0)
    parts, parent, target = _walk(model, loc, skip)
    kind = detail["type"]
    if kind == "extra_forbidden" and parts:
        key = str(loc[-1])
        inside = ".".join(parts[:-1]) if len(parts) > 1 else ""
        where = f" in {_dotted(inside)}" if inside else ""
        return Problem(name, "", f"unknown key '{key}'{where}{_suggestion(key, parent)}")
    if kind == UNKNOWN_ENTRY:
        noun = str((detail.get("ctx") or {}).get("noun", "entry"))
        value = detail["input"]
        position = next((p for p in reversed(loc) if isinstance(p, int)), None)
        at = f" at {noun.split()[-1]} {position + 1}" if position is not None else ""
        choices = _tags(target)
        if isinstance(value, dict) and value:
            key = next((str(k) for k in value if str(k) not in choices), str(next(iter(value))))
            return Problem(name, "", f"unknown {noun} '{key}'{at}{nearest(key, choices)}")
        known = ", ".join(sorted(choices))
        return Problem(name, "", f"a {noun}{at} must be a mapping with one of: {known}")
    return Problem(name, _dotted(".".join(parts)), message_of(detail))


def _dotted(path: str) -> str:
    return path.replace(".[", "[")


def _walk(model: Any, loc: Loc, skip: int) -> tuple[list[str], Any, Any]:
    """The displayed path parts after `skip`, the type holding the last part, and its type."""
    parts: list[str] = []
    current: Any = model
    parent: Any = None
    for index, part in enumerate(loc):
        parent = current
        current, shown = _step(current, part)
        if shown and index >= skip:
            parts.append(f"[{part + 1}]" if isinstance(part, int) else str(part))
    return parts, parent, current


def _step(tp: Any, part: int | str) -> tuple[Any, bool]:
    """The type one location part leads to, and whether the part is shown (tags are not)."""
    tp = _unwrap(tp)
    if tp is None:
        return None, True
    members = _members(tp)
    if members:
        for member in members:
            if part == _tag(member) or part == getattr(_unwrap(member), "__name__", None):
                return member, False
        for member in members:  # `X | None`: pydantic adds no tag
            found, shown = _step(member, part)
            if found is not None:
                return found, shown
        return None, True
    origin = typing.get_origin(tp)
    if origin in (list, tuple, set, frozenset) and isinstance(part, int):
        args = typing.get_args(tp)
        return (args[0] if args else None), True
    if origin is dict and isinstance(part, str):
        args = typing.get_args(tp)
        return (args[1] if len(args) == 2 else None), True
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
        field = tp.model_fields.get(part) or next(
            (f for f in tp.model_fields.values() if f.validation_alias == part), None
        )
        if field is not None:
            return _annotated(field.annotation, field.metadata), True
    return None, True


def _annotated(annotation: Any, metadata: Sequence[Any]) -> Any:
    return typing.Annotated[annotation, *metadata] if metadata else annotation


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return tuple(a for a in typing.get_args(tp) if a is not type(None))
    return ()


def _tag(member: Any) -> str | None:
    if typing.get_origin(member) is typing.Annotated:
        for meta in typing.get_args(member)[1:]:
            tag = getattr(meta, "tag", None)
            if isinstance(tag, str):
                return tag
    return None


def _tags(tp: Any) -> list[str]:
    return [tag for tag in (_tag(m) for m in _members(_unwrap(tp))) if tag]


def _field_types(tp: Any) -> list[tuple[str, Any]]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [(n, _annotated(f.annotation, f.metadata)) for n, f in tp.model_fields.items()]
    pairs: list[tuple[str, Any]] = []
    for member in _members(tp):
        pairs += _field_types(member)
    return pairs


def _fields(tp: Any) -> list[str]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    names: list[str] = []
    for member in _members(tp):
        names += _fields(member)
    return names

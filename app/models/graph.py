"""Which models read which tables, in what order they build, and which a change reaches."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from core.errors import ConfigError, RequestError


@dataclass(frozen=True)
class ModelGraph:
    upstream: Mapping[str, frozenset[str]]
    """model -> the tables and models its SQL reads."""
    order: tuple[str, ...]
    """Every model, each after the models it reads (ties in name order, so runs repeat)."""

    @classmethod
    def of(cls, upstream: Mapping[str, Collection[str]]) -> ModelGraph:
        """Order the models; a cycle is a ConfigError naming the models on it."""
        edges = {
            name: frozenset(table for table in tables if table in upstream)
            for name, tables in upstream.items()
        }
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for name in sorted(edges):
            sorter.add(name, *sorted(edges[name]))
        try:
            sorter.prepare()
        except CycleError as error:
            cycle = list(error.args[1]) if len(error.args) > 1 else []
            path = " -> ".join(reversed(cycle)) or "unknown"
            raise ConfigError(
                f"models read each other in a cycle: {path}", details={"cycle": cycle}
            ) from None
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            order.extend(ready)
            sorter.done(*ready)
        return cls(
            upstream={name: frozenset(tables) for name, tables in upstream.items()},
            order=tuple(order),
        )

    def downstream_of(
        self, tables: Iterable[str], only: Collection[str] | None = None
    ) -> list[str]:
        """Models that read any of `tables`, directly or through other models, in order.

        `only`: the models that may be reached; a change stops at any other model.
        """
        reached = set(tables)
        found: list[str] = []
        for name in self.order:  # dependencies come first, so one pass reaches every level
            if only is not None and name not in only:
                continue
            if self.upstream[name] & reached:
                found.append(name)
                reached.add(name)
        return found

    def selection(self, names: Collection[str]) -> list[str]:
        """The named models and every model downstream of them, in order (all when empty)."""
        unknown = sorted(set(names) - set(self.order))
        if unknown:
            known = ", ".join(self.order) or "none"
            raise RequestError(f"no model named {', '.join(unknown)} (known: {known})")
        if not names:
            return list(self.order)
        chosen = set(names) | set(self.downstream_of(names))
        return [name for name in self.order if name in chosen]

"""Dependency order, cycles and what a change reaches (pure)."""

from __future__ import annotations

import pytest

from app.models.graph import ModelGraph
from core.errors import ConfigError, RequestError

# raw tables: ratings, movies; models: curated <- ratings, movies; best <- curated; other <- movies
GRAPH = {
    "best": {"curated"},
    "curated": {"ratings", "movies"},
    "other": {"movies"},
    "report": {"best", "other"},
}


def test_every_model_comes_after_what_it_reads() -> None:
    order = ModelGraph.of(GRAPH).order

    assert order.index("curated") < order.index("best") < order.index("report")
    assert order.index("other") < order.index("report")
    assert sorted(order) == sorted(GRAPH)


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"ratings"}, ["curated", "best", "report"]),
        ({"movies"}, ["curated", "other", "best", "report"]),
        ({"customers"}, []),
        ({"best"}, ["report"]),
    ],
    ids=["ratings", "movies", "unrelated", "a-model"],
)
def test_downstream_of_changed_tables_in_order(changed: set[str], expected: list[str]) -> None:
    graph = ModelGraph.of(GRAPH)
    found = graph.downstream_of(changed)

    assert sorted(found) == sorted(expected)
    assert found == [name for name in graph.order if name in expected]


def test_a_change_stops_at_models_left_to_build_on_demand() -> None:
    graph = ModelGraph.of(GRAPH)

    assert graph.downstream_of(["ratings"], only=["best", "report", "other"]) == []
    assert graph.downstream_of(["movies"], only=["other", "report"]) == ["other", "report"]


def test_selection_adds_downstream_models_and_empty_means_all() -> None:
    graph = ModelGraph.of(GRAPH)

    assert graph.selection(["best"]) == ["best", "report"]
    assert graph.selection([]) == list(graph.order)


def test_selecting_an_unknown_model_is_a_request_error() -> None:
    with pytest.raises(RequestError, match=r"no model named nope \(known: "):
        ModelGraph.of(GRAPH).selection(["nope"])


def test_a_cycle_names_its_models() -> None:
    with pytest.raises(ConfigError, match=r"cycle: (a -> b -> a|b -> a -> b)") as caught:
        ModelGraph.of({"a": {"b"}, "b": {"a"}, "c": {"raw"}})
    assert set(caught.value.details["cycle"]) == {"a", "b"}


def test_a_model_reading_itself_is_a_cycle() -> None:
    with pytest.raises(ConfigError, match="cycle: a -> a"):
        ModelGraph.of({"a": {"a"}})

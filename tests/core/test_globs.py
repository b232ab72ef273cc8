"""The one glob rule (core/globs.py), as pure string functions: no listing, no emulator."""

from __future__ import annotations

import pytest

from core.globs import glob_regex, literal_prefix, matches, narrows, split_glob, within


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.csv", "a.csv", True),
        ("*.csv", "dir/a.csv", False),
        ("**/*.csv", "a.csv", True),
        ("**/*.csv", "x/y/a.csv", True),
        ("in/**", "in/x/y.json", True),
        ("in/2024-??.csv", "in/2024-01.csv", True),
        ("in/?.csv", "in//.csv", False),
        ("in/[!b]*.csv", "in/b1.csv", False),
        ("in/[!b]*.csv", "in/a1.csv", True),
        ("in/[!b]x.csv", "in//x.csv", False),
        ("in/[ab]*.csv", "in/b1.csv", True),
        ("a.b+(c).csv", "a.b+(c).csv", True),
    ],
    ids=lambda value: str(value),
)
def test_glob_regex(pattern: str, name: str, expected: bool) -> None:
    assert bool(glob_regex(pattern).fullmatch(name)) is expected


def test_glob_splitting() -> None:
    assert split_glob("data/in/**/*.csv") == ("data/in", "**/*.csv")
    assert split_glob("data/a.csv") == ("data/a.csv", "")
    assert split_glob("gs://b/raw/2024-*/x.csv") == ("gs://b/raw", "2024-*/x.csv")
    assert literal_prefix("exports/2024-*/part.csv") == "exports/2024-"


@pytest.mark.parametrize(
    ("folder", "path", "expected"),
    [
        ("gs://b/land", "gs://b/land", True),
        ("gs://b/land", "gs://b/land/x.csv", True),
        ("gs://b/land/", "gs://b/land/x.csv", True),
        ("gs://b/land", "gs://b/land-secrets/x.csv", False),
        ("gs://b/land", "gs://b/landx", False),
        ("/data/exports", "/data/exports_private/a.csv", False),
        ("/", "/etc/passwd", True),
    ],
)
def test_within_compares_on_segment_boundaries(folder: str, path: str, expected: bool) -> None:
    assert within(folder, path) is expected


@pytest.mark.parametrize(
    ("pattern", "uri", "expected"),
    [
        ("gs://b/raw/*.csv", "gs://b/raw/x.csv", True),
        ("gs://b/raw/*.csv", "gs://other/raw/x.csv", False),
        ("gs://b/raw/*.csv", "gs://b/raw/x.json", False),
        # `*` stays within its segment: `run` never lists raw/sub/x.csv, so a push can't load it
        ("gs://b/raw/*.csv", "gs://b/raw/sub/x.csv", False),
        ("gs://b/raw/**/*.csv", "gs://b/raw/sub/x.csv", True),
        ("gs://b/raw/**/*.csv", "gs://b/raw/x.csv", True),
        ("gs://b/raw/", "gs://b/raw/2026/x.csv", True),
        ("gs://b/raw", "gs://b/raw/2026/x.csv", True),
        ("gs://b/raw", "gs://b/raw", True),
        ("gs://b/raw", "gs://b/rawdata/x.csv", False),
        ("gs://ferry-land", "gs://ferry-land-secrets/x.csv", False),
        ("gs://b", "gs://b/any/thing.csv", True),
        ("gs://b/raw/*.csv", "gs://b/raw/../secret/x.csv", False),
        ("gs://b/raw/*.csv", "gs://b/raw/%2e%2e/x.csv", False),
        ("gs://b/raw/", "gs://b/raw/a.csv\x00.txt", False),
        ("/srv/data/*.csv", "/srv/data/a.csv", True),
        ("/srv/data", "/srv/data_private/a.csv", False),
    ],
)
def test_matches(pattern: str, uri: str, expected: bool) -> None:
    assert matches(pattern, uri) is expected


@pytest.mark.parametrize(
    ("pattern", "candidate", "expected"),
    [
        ("gs://b/raw/*.csv", "gs://b/raw/x.csv", True),
        ("gs://b/raw/*.csv", "gs://b/raw/2024-*.csv", True),
        # allowed to list, but every listed object is re-checked with `matches`
        ("gs://b/raw/*.csv", "gs://b/raw/**", True),
        ("gs://b/raw/*.csv", "gs://b/**", False),
        ("gs://b/raw/*.csv", "gs://b/raw-x/*.csv", False),
        ("gs://b/raw/*.csv", "gs://b/raw/*/../../x.csv", False),
        ("gs://b/raw/*.csv", "gs://*/raw/x.csv", False),
        ("gs://ferry-land", "gs://ferry-land/2026/*.csv", True),
        ("gs://ferry-land", "gs://ferry-land-secrets/**", False),
        ("gs://ferry-land", "gs://ferry-land*/**", False),
        ("gs://ferry-in/exports", "gs://ferry-in/exports-private/*", False),
        ("gs://ferry-in/exports", "gs://ferry-in/exports/*", True),
        ("/srv/data/exports", "/srv/data/exports_private/*", False),
        ("/srv/data/exports", "/srv/data/exports/*.csv", True),
        ("/srv/data/*.csv", "/etc/passwd", False),
        ("/srv/data/*.csv", "*", False),
    ],
)
def test_narrows(pattern: str, candidate: str, expected: bool) -> None:
    assert narrows(pattern, candidate) is expected

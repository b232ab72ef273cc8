"""gs:// URIs are split by one helper (core/uris.py)."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.uris import gs_uri, is_gcs, split_gs_uri


def test_split_keeps_the_name_byte_for_byte() -> None:
    assert split_gs_uri("gs://b/a/b.csv") == ("b", "a/b.csv")
    assert split_gs_uri("gs://b") == ("b", "")
    assert split_gs_uri("gs://b/x/../y%2e") == ("b", "x/../y%2e")
    assert gs_uri(*split_gs_uri("gs://b/a/b.csv")) == "gs://b/a/b.csv"


@pytest.mark.parametrize("uri", ["/local/a.csv", "gs:///no-bucket", "s3://b/a.csv"])
def test_not_a_bucket_uri(uri: str) -> None:
    with pytest.raises(ConfigError):
        split_gs_uri(uri)
    assert is_gcs(uri) is uri.startswith("gs://")

"""The GCS object reader maps Google's errors with core.errors' one status/reason table."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors

from core.errors import (
    FerryError,
    QuotaExceededError,
    SourceAccessDeniedError,
    SourceNotFoundError,
    SourceRejectedError,
    SourceUnavailableError,
)
from sources.files.objects import gcs_errors


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (google_errors.NotFound("No such object: b/o"), SourceNotFoundError),
        (google_errors.Forbidden("denied"), SourceAccessDeniedError),
        (
            google_errors.Forbidden("slow down", errors=[{"reason": "rateLimitExceeded"}]),
            QuotaExceededError,
        ),
        (google_errors.TooManyRequests("slow down"), QuotaExceededError),
        (google_errors.Conflict("concurrent update"), SourceUnavailableError),
        (google_errors.BadRequest("Invalid bucket name"), SourceRejectedError),
        (google_errors.ServiceUnavailable("try later"), SourceUnavailableError),
        (auth_errors.RefreshError("expired"), SourceAccessDeniedError),
        (auth_errors.TransportError("no route"), SourceUnavailableError),
        (requests.ConnectionError("reset"), SourceUnavailableError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_google_errors_take_their_class_from_the_one_table(
    raised: BaseException, expected: type[FerryError]
) -> None:
    with pytest.raises(expected) as caught, gcs_errors("gs://b/o"):
        raise raised
    assert "gs://b/o" in caught.value.message
    assert caught.value.__cause__ is raised


def test_an_error_of_no_known_library_type_passes_through() -> None:
    with pytest.raises(LookupError), gcs_errors("gs://b/o"):
        raise LookupError("a bug")

"""The resource body: one request per page, errors mapped to ferry's hierarchy."""

# No `from __future__ import annotations` here: dlt reads the `cursor` annotation at
# runtime to see that the incremental argument is optional.
import copy
from collections.abc import Iterator
from typing import Any

from dlt.extract.incremental import Incremental
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import exceptions as http

from core.errors import (
    BadDataError,
    FerryError,
    Recovery,
    RequestError,
    SourceUnavailableError,
)
from sources.api.client import GuardedRESTClient, raise_for_status
from sources.api.helpers import cursor_param_value, error_for_status, retry_after_seconds, safe_url

Page = list[dict[str, Any]]


def fetch_pages(
    client: GuardedRESTClient,
    path: str,
    params: dict[str, Any],
    paginator: BasePaginator | None,
    resource_name: str,
    cursor: Incremental[Any] | None,
    cursor_param: str | None,
    max_retry_delay: float,
) -> Iterator[Page]:
    """Yield each page of records; raise FerryError subclasses naming the resource."""
    request_params = dict(params)
    if cursor is not None and cursor_param and cursor.last_value is not None:
        request_params[cursor_param] = cursor_param_value(cursor.last_value)
    where = f"API resource '{resource_name}'"
    try:
        for page in client.paginate(
            path=path,
            params=request_params,
            paginator=copy.deepcopy(paginator),
            hooks={"response": [raise_for_status]},
        ):
            yield list(page)
    except FerryError as exc:
        raise type(exc)(f"{where}: {exc.message}", details=exc.details) from None
    except http.HTTPError as exc:
        raise http_error(exc, where, max_retry_delay) from None
    except (http.ConnectionError, http.Timeout) as exc:
        url = safe_url(exc.request.url or "") if exc.request is not None else client.base_url
        raise SourceUnavailableError(
            f"{where}: {type(exc).__name__} reaching {url} (after retries)",
            details={"resource": resource_name, "url": url},
        ) from None
    except http.JSONDecodeError as exc:
        raise BadDataError(
            f"{where}: response is not valid JSON ({exc.msg} at line {exc.lineno})",
            details={"resource": resource_name},
        ) from None
    except (http.InvalidURL, http.InvalidSchema, http.MissingSchema, http.TooManyRedirects) as exc:
        raise RequestError(
            f"{where}: {type(exc).__name__}", details={"resource": resource_name}
        ) from None
    except http.RequestException as exc:
        raise SourceUnavailableError(
            f"{where}: {type(exc).__name__}", details={"resource": resource_name}
        ) from None
    except ValueError as exc:
        # dlt's paginators raise ValueError when a page lacks what they were told to find
        raise BadDataError(f"{where}: {exc}", details={"resource": resource_name}) from None


def http_error(exc: http.HTTPError, where: str, max_retry_delay: float) -> FerryError:
    """The ferry error for an HTTP error status that survived retries."""
    response = exc.response
    if response is None:
        return SourceUnavailableError(f"{where}: {type(exc).__name__}")
    status = response.status_code
    url = safe_url(response.url)
    error_class = error_for_status(status)
    message = f"{where}: HTTP {status} from {url}"
    delay = retry_after_seconds(response.headers.get("Retry-After"))
    retriable = error_class.recovery is Recovery.RETRIABLE
    if retriable and delay is not None and delay > max_retry_delay:
        message += f" (Retry-After {delay:.0f}s exceeds the {max_retry_delay:.0f}s we wait)"
    elif retriable:
        message += " (after retries)"
    return error_class(message, details={"status": status, "url": url})

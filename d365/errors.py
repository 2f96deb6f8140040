"""Errors raised by the Dataverse side, and the translation of an HTTP error response into one.

```
D365Error                           status, code, message, request_id, transient
├── D365AuthenticationError         401, or no token could be had; transient unless the credential
│                                   itself was refused (invalid_client, unauthorized_client, ...)
├── D365APIError                    any other HTTP error: transient for 408 and 5xx, else permanent
│   └── D365NotFoundError           404
├── D365RateLimitError              429, with retry_after in seconds (transient)
├── D365PreconditionFailedError     412
│   ├── D365DuplicateError          the record or its alternate key already exists
│   └── D365RecordChangedError      the record changed since the ETag we sent (If-Match)
├── D365ConnectionError             connection refused or dropped, timeout (transient)
└── D365DeadlineExceededError       the push's deadline passed; the request was not sent (transient)
```

`code` is Dataverse's own, verbatim (`"0x0"` included); `request_id` is the response's
`x-ms-service-request-id`, the id Microsoft support asks for; `failed_indexes` names the failing
targets of a bulk request when Dataverse says; `earlier_attempt_unanswered` says a write may have
landed on an earlier attempt of the same call. `is_unknown_column` recognises both forms of
"no such column".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

DEFAULT_RETRY_AFTER_SECONDS = 5.0
_REQUEST_ID_HEADERS = ("x-ms-service-request-id", "req_id")
_MAX_RAW_MESSAGE = 200

# docs/dataverse.md section 5: an unknown column is answered with code 0x0 (documented form) or
# 0x80048d19 (newer live form) in a body, and with 0x0 in $select/$filter.
VERSION_MISMATCH_CODE = "0x80060882"  # ConcurrencyVersionMismatch
KEY_VIOLATION_CODE = "0x80060892"  # DuplicateRecordEntityKey: another record holds the key values
_UNKNOWN_COLUMN_CODES = ("0x0", "", "0x80048d19")
# With `Prefer: odata.include-annotations`, a failed bulk request may name its failing targets here.
_BULK_ERROR_DETAILS = "@Microsoft.PowerApps.CDS.ErrorDetails.BulkApiErrorDetails"
_UNKNOWN_COLUMN = re.compile(
    r"Invalid property '(?P<a>[^']+)' was found"
    r"|An undeclared property '(?P<b>[^']+)'"
    r"|Could not find a property named '(?P<c>[^']+)'"
)


class D365Error(Exception):
    """Base of every Dataverse error."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        # Set by the client when an earlier attempt of the same call was sent and got no answer (a
        # dropped connection, a timeout): a write may then have landed although this error says not,
        # e.g. a 412 to a retried `If-Match` update whose first attempt committed.
        self.earlier_attempt_unanswered = False
        # The indexes of the targets a failed bulk request names as failing (when Dataverse says).
        self.failed_indexes: tuple[int, ...] = ()

    @property
    def transient(self) -> bool:
        return False

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else None, self.code or None]
        prefix = " ".join(p for p in parts if p)
        return f"{prefix}: {self.message}" if prefix else self.message


class D365AuthenticationError(D365Error):
    """No usable token. Transient by default (an endpoint down, throttled, or a 401 that a fresh
    token may cure); permanent only when the credential itself was refused."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = True,
        unreachable: bool = False,
        retry_after: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(message, **kwargs)
        self.unreachable = unreachable
        self.retry_after = retry_after
        self._transient = transient or unreachable

    @property
    def transient(self) -> bool:
        return self._transient


class D365APIError(D365Error):
    @property
    def transient(self) -> bool:
        return self.status is not None and (self.status == 408 or self.status >= 500)


class D365NotFoundError(D365APIError):
    pass


class D365RateLimitError(D365Error):
    def __init__(self, message: str, *, retry_after: float = DEFAULT_RETRY_AFTER_SECONDS, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return True


class D365PreconditionFailedError(D365Error):
    """412: the condition the write carried (If-Match, If-None-Match, a key's uniqueness) failed."""


class D365DuplicateError(D365PreconditionFailedError):
    pass


class D365RecordChangedError(D365PreconditionFailedError):
    """The record is no longer at the ETag the update carried: someone wrote it since."""


class D365ConnectionError(D365Error):
    @property
    def transient(self) -> bool:
        return True


class D365DeadlineExceededError(D365Error):
    """The time budget of the current push ran out before the request could be sent (or its
    wait could end); nothing was sent."""

    @property
    def transient(self) -> bool:
        return True


def is_unknown_column(error: BaseException) -> bool:
    """Whether Dataverse refused a request because it names a column the table does not have,
    in either form it uses (code 0x0 or 0x80048d19; body, $select or $filter)."""
    return unknown_column_name(error) is not None


def unknown_column_name(error: BaseException) -> str | None:
    """The column an unknown-column error names; None for any other error."""
    if not isinstance(error, D365APIError) or error.status != 400 or error.code not in _UNKNOWN_COLUMN_CODES:
        return None
    match = _UNKNOWN_COLUMN.search(error.message)
    return next((name for name in match.groups() if name), None) if match else None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> D365Error:
    """The typed error for an HTTP error response; never raises, whatever the body holds."""
    lowered = {name.lower(): value for name, value in headers.items()}
    code, message, failed_indexes = _parse_odata_error(body)
    request_id = next((lowered[h] for h in _REQUEST_ID_HEADERS if lowered.get(h)), None)
    message = message or _raw_message(body) or f"HTTP {status} with no error body"
    kind: type[D365Error] = D365APIError
    if status == 401:
        kind = D365AuthenticationError
    elif status == 404:
        kind = D365NotFoundError
    elif status == 412:
        version_mismatch = code == VERSION_MISMATCH_CODE or "RowVersion" in message
        kind = D365RecordChangedError if version_mismatch else D365DuplicateError
    elif status == 429:
        retry_after = parse_retry_after(lowered.get("retry-after"))
        return D365RateLimitError(message, retry_after=retry_after, status=status, code=code, request_id=request_id)
    error = kind(message, status=status, code=code, request_id=request_id)
    error.failed_indexes = failed_indexes
    return error


def parse_retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header; the default when it is absent, negative or not a number."""
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
    return seconds if 0 <= seconds < float("inf") else DEFAULT_RETRY_AFTER_SECONDS


def _parse_odata_error(body: bytes) -> tuple[str, str, tuple[int, ...]]:
    """(code, message, failed target indexes) of `{"error":{"code","message"}}`, the code verbatim
    ("" when absent)."""
    try:
        error = json.loads(body.decode("utf-8")).get("error")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return "", "", ()
    if not isinstance(error, dict):
        return "", "", ()
    code = error.get("code")
    message = error.get("message")
    code = code if isinstance(code, str) else ""
    return code, message if isinstance(message, str) else "", _failed_indexes(error.get(_BULK_ERROR_DETAILS))


def _failed_indexes(details: object) -> tuple[int, ...]:
    """The `RequestIndex` of each item of a bulk request's error details (a JSON text); () when absent."""
    try:
        items = json.loads(details) if isinstance(details, str) else None
    except ValueError:
        return ()
    if not isinstance(items, list):
        return ()
    indexes = (item.get("RequestIndex") for item in items if isinstance(item, dict))
    return tuple(sorted({index for index in indexes if isinstance(index, int) and not isinstance(index, bool)}))


def _raw_message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):  # JSON that is not an OData error says nothing useful
        return ""
    return text[:_MAX_RAW_MESSAGE]

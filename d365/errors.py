"""Errors raised by the Dataverse side, and the translation of an HTTP error response into one.

```
D365Error                       status, code, message, request_id, transient
├── D365AuthenticationError     401, or no token could be had (transient when the token
│                               endpoint was unreachable)
├── D365APIError                any other HTTP error: transient for 408 and 5xx, else permanent
│   └── D365NotFoundError       404
├── D365RateLimitError          429, with retry_after in seconds (transient)
├── D365DuplicateError          412: the record or its alternate key already exists
└── D365ConnectionError         connection refused or dropped, timeout (transient)
```
"""
from __future__ import annotations

import json
from typing import Mapping

DEFAULT_RETRY_AFTER_SECONDS = 5.0
_REQUEST_ID_HEADERS = ("x-ms-service-request-id", "req_id")
_MAX_RAW_MESSAGE = 200


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

    @property
    def transient(self) -> bool:
        return False

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else None, self.code or None]
        prefix = " ".join(p for p in parts if p)
        return f"{prefix}: {self.message}" if prefix else self.message


class D365AuthenticationError(D365Error):
    def __init__(self, message: str, *, unreachable: bool = False, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.unreachable = unreachable

    @property
    def transient(self) -> bool:
        return self.unreachable


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


class D365DuplicateError(D365Error):
    pass


class D365ConnectionError(D365Error):
    @property
    def transient(self) -> bool:
        return True


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> D365Error:
    """The typed error for an HTTP error response; never raises, whatever the body holds."""
    lowered = {name.lower(): value for name, value in headers.items()}
    code, message = _parse_odata_error(body)
    fields = {
        "status": status,
        "code": code,
        "request_id": next((lowered[h] for h in _REQUEST_ID_HEADERS if lowered.get(h)), None),
    }
    message = message or _raw_message(body) or f"HTTP {status} with no error body"
    if status == 401:
        return D365AuthenticationError(message, **fields)
    if status == 404:
        return D365NotFoundError(message, **fields)
    if status == 412:
        return D365DuplicateError(message, **fields)
    if status == 429:
        return D365RateLimitError(message, retry_after=parse_retry_after(lowered.get("retry-after")), **fields)
    return D365APIError(message, **fields)


def parse_retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header; the default when it is absent, negative or not a number."""
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
    return seconds if 0 <= seconds < float("inf") else DEFAULT_RETRY_AFTER_SECONDS


def _parse_odata_error(body: bytes) -> tuple[str, str]:
    """(code, message) of `{"error":{"code","message"}}`; a code of "0x0" means none."""
    try:
        error = json.loads(body.decode("utf-8")).get("error")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    code = error.get("code")
    message = error.get("message")
    code = code if isinstance(code, str) and code not in ("", "0x0") else ""
    return code, message if isinstance(message, str) else ""


def _raw_message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):  # JSON that is not an OData error says nothing useful
        return ""
    return text[:_MAX_RAW_MESSAGE]

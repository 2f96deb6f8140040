from __future__ import annotations

import json

import pytest

from d365.errors import (
    DEFAULT_RETRY_AFTER_SECONDS,
    D365APIError,
    D365AuthenticationError,
    D365ConnectionError,
    D365DuplicateError,
    D365Error,
    D365NotFoundError,
    D365RateLimitError,
    error_from_response,
)


def _body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "transient"),
    [
        (401, b"", D365AuthenticationError, "", False),
        (403, _body("0x80072560", "The user is not a member of the organization."), D365APIError, "0x80072560", False),
        (400, _body("0x0", "Could not find a property named 'x'"), D365APIError, "", False),
        (404, _body("0x80040217", "lead With Id = 1 Does Not Exist"), D365NotFoundError, "0x80040217", False),
        (408, b"", D365APIError, "", True),
        (412, _body("", "A record with matching key values already exists."), D365DuplicateError, "", False),
        (412, _body("0x80060892", "Entity Key violated"), D365DuplicateError, "0x80060892", False),
        (429, _body("0x80072322", "Number of requests exceeded"), D365RateLimitError, "0x80072322", True),
        (500, b"<html>oops</html>", D365APIError, "", True),
        (502, b"not json", D365APIError, "", True),
        (503, b"", D365APIError, "", True),
    ],
)
def test_error_from_response_classifies(status, body, kind, code, transient) -> None:
    error = error_from_response(status, {}, body)
    assert type(error) is kind
    assert (error.status, error.code, error.transient) == (status, code, transient)
    assert error.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_body("0x80040217", "lead missing"), "lead missing"),
        (b"", "HTTP 400 with no error body"),
        (b"\xff\xfe", "\ufffd\ufffd"),
        (b"plain text failure", "plain text failure"),
        (b'{"unexpected": 1}', "HTTP 400 with no error body"),
        (b'{"error": "flat"}', "HTTP 400 with no error body"),
        (b'{"error": {"code": 5, "message": null}}', "HTTP 400 with no error body"),
        (b"[1, 2]", "[1, 2]"),
    ],
)
def test_error_message_parsed_defensively(body: bytes, message: str) -> None:
    assert error_from_response(400, {}, body).message == message


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0", 0.0), ("2.5", 2.5), ("soon", DEFAULT_RETRY_AFTER_SECONDS), ("-1", DEFAULT_RETRY_AFTER_SECONDS),
     ("inf", DEFAULT_RETRY_AFTER_SECONDS), (None, DEFAULT_RETRY_AFTER_SECONDS)],
)
def test_retry_after(header: str | None, seconds: float) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    error = error_from_response(429, headers, b"")
    assert isinstance(error, D365RateLimitError)
    assert error.retry_after == seconds


@pytest.mark.parametrize(
    ("headers", "request_id"),
    [({"x-ms-service-request-id": "abc"}, "abc"), ({"REQ_ID": "def"}, "def"),
     ({"X-MS-Service-Request-Id": "ghi", "REQ_ID": "jkl"}, "ghi"), ({}, None)],
)
def test_request_id(headers: dict, request_id: str | None) -> None:
    assert error_from_response(500, headers, b"").request_id == request_id


def test_hierarchy_and_transience() -> None:
    assert issubclass(D365NotFoundError, D365APIError)
    for kind in (D365AuthenticationError, D365APIError, D365RateLimitError, D365DuplicateError, D365ConnectionError):
        assert issubclass(kind, D365Error)
    assert D365ConnectionError("dropped").transient
    assert not D365AuthenticationError("bad secret").transient
    assert D365AuthenticationError("no route", unreachable=True).transient
    assert str(error_from_response(404, {}, _body("0x80040217", "gone"))) == "HTTP 404 0x80040217: gone"

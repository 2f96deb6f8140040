from __future__ import annotations

import json

import pytest

from d365.errors import (
    DEFAULT_RETRY_AFTER_SECONDS,
    D365APIError,
    D365AuthenticationError,
    D365ConnectionError,
    D365DeadlineExceededError,
    D365DuplicateError,
    D365Error,
    D365NotFoundError,
    D365PreconditionFailedError,
    D365RateLimitError,
    D365RecordChangedError,
    error_from_response,
    is_unknown_column,
    unknown_column_name,
)


def _body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "transient"),
    [
        (401, b"", D365AuthenticationError, "", True),  # a 401 a fresh token did not cure: try later
        (403, _body("0x80072560", "The user is not a member of the organization."), D365APIError, "0x80072560", False),
        (400, _body("0x0", "Could not find a property named 'x'"), D365APIError, "0x0", False),
        (404, _body("0x80040217", "lead With Id = 1 Does Not Exist"), D365NotFoundError, "0x80040217", False),
        (408, b"", D365APIError, "", True),
        (412, _body("", "A record with matching key values already exists."), D365DuplicateError, "", False),
        (412, _body("0x80060892", "Entity Key violated"), D365DuplicateError, "0x80060892", False),
        (412, _body("0x80060882", "The version of the existing record doesn't match the RowVersion property provided."),
         D365RecordChangedError, "0x80060882", False),
        (412, _body("", "The version of the existing record doesn't match the RowVersion property provided."),
         D365RecordChangedError, "", False),
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
    for kind in (D365AuthenticationError, D365APIError, D365RateLimitError, D365PreconditionFailedError,
                 D365ConnectionError, D365DeadlineExceededError):
        assert issubclass(kind, D365Error)
    assert issubclass(D365DuplicateError, D365PreconditionFailedError)
    assert issubclass(D365RecordChangedError, D365PreconditionFailedError)
    assert D365ConnectionError("dropped").transient
    assert D365DeadlineExceededError("too late").transient
    assert not D365RecordChangedError("changed", status=412).transient
    assert D365AuthenticationError("endpoint answered 500").transient
    assert not D365AuthenticationError("bad secret", transient=False).transient
    assert D365AuthenticationError("no route", unreachable=True, transient=False).transient
    assert str(error_from_response(404, {}, _body("0x80040217", "gone"))) == "HTTP 404 0x80040217: gone"


_DOC_FORM = (
    "An error occurred while validating input parameters: Microsoft.Crm.CrmException: Invalid property 'hnt_foo' was "
    "found in entity 'Microsoft.Dynamics.CRM.lead'. ---> Microsoft.OData.ODataException: Does not support untyped "
    "value in non-open type."
)
_LIVE_FORM = (
    "Error identified in Payload provided by the user for Entity :'leads', For more information on this error please "
    "follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : "
    "Microsoft.Crm.CrmException: Invalid property 'hnt_foo' was found in entity 'Microsoft.Dynamics.CRM.lead'."
)


@pytest.mark.parametrize(
    ("status", "code", "message", "column"),
    [
        (400, "0x0", _DOC_FORM, "hnt_foo"),  # docs/dataverse.md 5, the documented form
        (400, "0x80048d19", _LIVE_FORM, "hnt_foo"),  # the newer live form
        (400, "", _DOC_FORM, "hnt_foo"),  # older services send no code at all
        (400, "0x0", "Could not find a property named 'hnt_gone' on type 'Microsoft.Dynamics.CRM.lead'.", "hnt_gone"),
        (400, "0x80048d19", "An undeclared property 'parentaccountid' which only has property annotations", "parentaccountid"),
        (400, "0x80048d19", "Cannot convert the literal 'Partner' to the expected type 'Edm.Int32'", None),
        (400, "0x80044331", "The length of the 'subject' attribute of the 'lead' entity exceeded", None),
        (400, "0x80040265", "Invalid property 'x' was found", None),  # a plug-in's own message
        (403, "0x80040220", "Principal user is missing prvCreateLead privilege", None),
        (500, "0x0", _DOC_FORM, None),
    ],
)
def test_unknown_column_in_both_forms(status: int, code: str, message: str, column: str | None) -> None:
    error = error_from_response(status, {}, _body(code, message))
    assert error.code == code  # kept verbatim, 0x0 included
    assert unknown_column_name(error) == column
    assert is_unknown_column(error) is (column is not None)


def test_unknown_column_is_false_for_anything_else() -> None:
    assert not is_unknown_column(ValueError("Invalid property 'x' was found"))
    assert not is_unknown_column(D365ConnectionError("dropped"))

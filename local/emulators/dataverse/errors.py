"""The OData error the emulator answers with, and the Dataverse error codes it uses."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

NOT_FOUND = "0x80040217"  # ObjectDoesNotExist
DUPLICATE_RECORD = "0x80040237"  # DuplicateRecord
VERSION_MISMATCH = "0x80060882"  # ConcurrencyVersionMismatch
KEY_NOT_DEFINED = "0x80060890"  # EntityKeyNotDefined
KEY_RECORD_NOT_FOUND = "0x80060891"
KEY_VIOLATED = "0x80060892"  # DuplicateRecordEntityKey
RESOURCE_NOT_FOUND = "0x8006088a"
PAYLOAD_ERROR = "0x80048d19"
MAX_LENGTH_EXCEEDED = "0x80044331"
PICKLIST_OUT_OF_RANGE = "0x8004431A"
QUERY_ERROR = "0x0"
# Live services answer query options they refuse with this code (seen for $skip and bad $select in
# public client code); the exact wording of those messages is [UNCONFIRMED] and easy to change here.
UNSUPPORTED_QUERY = "0x80060888"
UNEXPECTED = "0x80040216"  # UnExpected: what Dataverse answers when it fails internally
NO_SUCH_ATTRIBUTE = "0x80041103"  # QueryBuilderNoAttribute: a query function names an unknown column
INVALID_ARGUMENT = "0x80040203"  # InvalidArgument

ENTITY = "lead"
ENTITY_TYPE = "Microsoft.Dynamics.CRM.lead"


class ODataError(Exception):
    """An error answered as `{"error":{"code","message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def record_not_found(lead_id: str) -> ODataError:
    return ODataError(404, NOT_FOUND, f"{ENTITY} With Id = {lead_id} Does Not Exist")


def unknown_property(name: str, type_name: str = ENTITY_TYPE) -> ODataError:
    return ODataError(400, QUERY_ERROR, f"Could not find a property named '{name}' on type '{type_name}'.")


def unsupported_query_option(name: str) -> ODataError:
    return ODataError(400, UNSUPPORTED_QUERY, f"The query parameter {name} is not supported")


def resource_not_found(segment: str) -> ODataError:
    return ODataError(404, RESOURCE_NOT_FOUND, f"Resource not found for the segment '{segment}'.")


# Dataverse answers an unknown property in a POST/PATCH body in two forms (docs/dataverse.md section 5):
# 0x80048d19 (newer live, the default here) or 0x0 (documented). The control API switches it.
_INVALID_PROPERTY = "Microsoft.Crm.CrmException: Invalid property "
_unknown_property_form = [PAYLOAD_ERROR]
# An in-process caller's own choice, for the requests it handles on this thread (see unknown_property_form_as).
_unknown_property_form_here: ContextVar[str | None] = ContextVar("unknown_property_form", default=None)


def set_unknown_property_form(code: str) -> None:
    """Raises ValueError for a code that is neither form."""
    if code not in (PAYLOAD_ERROR, QUERY_ERROR):
        raise ValueError(f"unknown_property must be {PAYLOAD_ERROR!r} or {QUERY_ERROR!r}, got {code!r}")
    _unknown_property_form[0] = code


def unknown_property_form() -> str:
    return _unknown_property_form_here.get() or _unknown_property_form[0]


@contextlib.contextmanager
def unknown_property_form_as(code: str) -> Iterator[None]:
    """Answer an unknown body property in this form within the block, in this thread only: several
    in-process emulators can then each keep their own. Raises ValueError as set_unknown_property_form."""
    if code not in (PAYLOAD_ERROR, QUERY_ERROR):
        raise ValueError(f"unknown_property must be {PAYLOAD_ERROR!r} or {QUERY_ERROR!r}, got {code!r}")
    token = _unknown_property_form_here.set(code)
    try:
        yield
    finally:
        _unknown_property_form_here.reset(token)


def payload_error(inner: str) -> ODataError:
    """The newer live wording of a rejected request body (docs/dataverse.md section 5); for an unknown
    property, the documented 0x0 wording when that form is switched on."""
    if inner.startswith(_INVALID_PROPERTY) and unknown_property_form() == QUERY_ERROR:
        return ODataError(400, QUERY_ERROR, f"An error occurred while validating input parameters: {inner}")
    return ODataError(
        400,
        PAYLOAD_ERROR,
        "Error identified in Payload provided by the user for Entity :'leads', For more information on this "
        "error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  "
        f"InnerException : {inner}",
    )

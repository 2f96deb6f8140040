"""Validation of create/update bodies against the schema, with Dataverse's error codes.

The wording for a wrong JSON type is UNCONFIRMED in docs/dataverse.md 5; it follows OData's
"Cannot convert the literal" message and is easy to change here. A lookup is written as
`<name>@odata.bind: "/<entity set>(<guid>)"` and stored under its `_<name>_value`; the wording of a
bad reference is the emulator's own (UNCONFIRMED).
"""
from __future__ import annotations

import json
import re
from typing import Any

from local.emulators.dataverse.errors import (
    ENTITY,
    ENTITY_TYPE,
    MAX_LENGTH_EXCEEDED,
    PICKLIST_OUT_OF_RANGE,
    ODataError,
    payload_error,
)
from local.emulators.dataverse.schema import (
    INT_MAX,
    INT_MIN,
    LOOKUP_TYPES,
    PRIMARY_KEY,
    AttributeType,
    Column,
    Schema,
)
from local.emulators.dataverse.urlkeys import parse_guid

EDM_TYPES = {
    AttributeType.STRING: "Edm.String",
    AttributeType.MEMO: "Edm.String",
    AttributeType.INTEGER: "Edm.Int32",
    AttributeType.PICKLIST: "Edm.Int32",
    AttributeType.STATE: "Edm.Int32",
    AttributeType.STATUS: "Edm.Int32",
    AttributeType.BOOLEAN: "Edm.Boolean",
    AttributeType.UNIQUEIDENTIFIER: "Edm.Guid",
    AttributeType.DATETIME: "Edm.DateTimeOffset",
    AttributeType.BIGINT: "Edm.Int64",
    AttributeType.OWNER: "Edm.Guid",
    AttributeType.LOOKUP: "Edm.Guid",
}
BIND = "@odata.bind"
ENTITY_SETS = {"systemuser": "systemusers", "team": "teams", "lead": "leads"}
_REFERENCE = re.compile(r"^(?:.*/)?(?P<set>[A-Za-z_]+)\((?P<id>[^)]*)\)$")
_NAVIGATION_PRIMITIVE = (
    "Microsoft.OData.ODataException: A 'PrimitiveValue' node with non-null value was found when trying to read "
    "the value of a navigation property; however, a 'StartArray' node, a 'StartObject' node, or a 'PrimitiveValue' "
    "node with null value was expected."
)


def parse_values(schema: Schema, body: Any, *, creating: bool) -> dict[str, Any]:
    """Return the writable column values in `body` (annotations and read-only columns dropped).

    Raises ODataError 400: 0x80048d19 for a non-object body, an unknown property or a wrong JSON
    type; 0x80044331 for a string over MaxLength; 0x8004431A for a choice value not among the options.
    """
    if not isinstance(body, dict):
        raise payload_error("Microsoft.OData.ODataException: The request body must be a JSON object.")
    for name in body:
        if name.startswith("@"):
            continue
        if "@" in name:
            prop = name.split("@", 1)[0]
            if name == prop + BIND and _is_lookup(schema.columns.get(prop)):
                continue
            raise payload_error(
                f"Microsoft.OData.ODataException: An undeclared property '{prop}' which only has property "
                "annotations in the payload but no property value was found in the payload. In OData, only "
                "declared navigation properties and declared named streams can be represented as properties "
                "without values."
            )
        if name not in schema.columns:
            raise payload_error(
                f"Microsoft.Crm.CrmException: Invalid property '{name}' was found in entity '{ENTITY_TYPE}'. "
                "---> Microsoft.OData.ODataException: Does not support untyped value in non-open type."
            )
        if _is_lookup(schema.columns[name]) and body[name] is not None:
            raise payload_error(_NAVIGATION_PRIMITIVE)
    values: dict[str, Any] = {}
    for name, value in body.items():
        bind = name.endswith(BIND)
        if name.startswith("@") or ("@" in name and not bind):
            continue
        column = schema.columns[name.removesuffix(BIND)]
        writable = column.valid_for_create if creating else column.valid_for_update
        if _is_lookup(column) and not bind:
            continue  # a null navigation property: nothing to bind
        # Dataverse silently ignores columns not valid for the operation (docs/dataverse.md 3.1).
        if writable or name == PRIMARY_KEY:
            values[column.property_name] = bound_id(column, value) if bind else check_value(column, value)
    return values


def _is_lookup(column: Column | None) -> bool:
    return column is not None and column.attribute_type in LOOKUP_TYPES


def bound_id(column: Column, reference: Any) -> str:
    """The record id in `/<entity set>(<guid>)` (relative or absolute) if it names one of the lookup's
    tables. Raises ODataError 400 otherwise."""
    match = _REFERENCE.match(reference) if isinstance(reference, str) else None
    lead_id = parse_guid(match.group("id")) if match else None
    allowed = [ENTITY_SETS.get(target, target + "s") for target in column.targets]
    if match is None or lead_id is None or match.group("set") not in allowed:
        raise payload_error(f"Microsoft.OData.ODataException: The value of '{column.logical_name}{BIND}' must be a "
                            f"reference to a record of {' or '.join(allowed)}, such as '/{allowed[0]}(<guid>)'; got "
                            f"{json.dumps(reference)}.")
    return lead_id


def check_value(column: Column, value: Any) -> Any:
    """Return `value` if it suits `column`; raises ODataError as `parse_values` describes."""
    if value is None:
        return None
    kind = column.attribute_type
    if kind in (AttributeType.STRING, AttributeType.MEMO, AttributeType.UNIQUEIDENTIFIER):
        if not isinstance(value, str):
            raise _wrong_type(column, value)
        if column.max_length is not None and len(value) > column.max_length:
            raise ODataError(
                400,
                MAX_LENGTH_EXCEEDED,
                f"A validation error occurred.  The length of the '{column.logical_name}' attribute of the "
                f"'{ENTITY}' entity exceeded the maximum allowed length of '{column.max_length}'.",
            )
        return value
    if kind is AttributeType.BOOLEAN:
        if not isinstance(value, bool):
            raise _wrong_type(column, value)
        return value
    if not isinstance(value, int) or isinstance(value, bool) or not INT_MIN <= value <= INT_MAX:
        raise _wrong_type(column, value)
    if column.options and value not in column.option_values:
        accepted = ",".join(str(option.value) for option in column.options)
        raise ODataError(
            400,
            PICKLIST_OUT_OF_RANGE,
            f"A validation error occurred. The value {value} of '{column.logical_name}' on record of type "
            f"'{ENTITY}' is outside the valid range. Accepted Values: {accepted}",
        )
    return value


def _wrong_type(column: Column, value: Any) -> ODataError:
    literal = value if isinstance(value, str) else json.dumps(value)
    return payload_error(
        f"Microsoft.OData.ODataException: Cannot convert the literal '{literal}' to the expected type "
        f"'{EDM_TYPES.get(column.attribute_type, 'Edm.String')}' for property '{column.logical_name}'."
    )

"""Answers to the metadata reads of docs/dataverse.md section 8: the entity, its attributes, option sets, keys."""
from __future__ import annotations

import re
from typing import Any, Mapping

from local.emulators.dataverse.errors import ENTITY, NOT_FOUND, ODataError, resource_not_found, unknown_property
from local.emulators.dataverse.odata_filter import parse_filter
from local.emulators.dataverse.queryoptions import METADATA_OPTIONS, check_options
from local.emulators.dataverse.schema import (
    CHOICE_TYPES,
    INT_MAX,
    INT_MIN,
    LOOKUP_TYPES,
    PRIMARY_KEY,
    AttributeType,
    Column,
    Option,
    Schema,
    metadata_id,
)

NAMESPACE = "Microsoft.Dynamics.CRM."
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# A definition is addressed by LogicalName='x' or by its MetadataId (bare or as MetadataId=<guid>).
_PATH = re.compile(
    rf"^EntityDefinitions(?:\((?:LogicalName='(?P<entity>[^']*)'|(?:MetadataId=)?(?P<entity_id>{_GUID}))\))?"
    rf"(?:/(?P<nav>Attributes|Keys)(?:\((?:LogicalName='(?P<attribute>[^']*)'|(?:MetadataId=)?(?P<attribute_id>{_GUID}))\))?"
    r"(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>\w+))?(?P<optionset>/OptionSet)?)?$"
)
_TYPE_NAMES = {
    AttributeType.STRING: "StringAttributeMetadata",
    AttributeType.MEMO: "MemoAttributeMetadata",
    AttributeType.INTEGER: "IntegerAttributeMetadata",
    AttributeType.BOOLEAN: "BooleanAttributeMetadata",
    AttributeType.PICKLIST: "PicklistAttributeMetadata",
    AttributeType.STATE: "StateAttributeMetadata",
    AttributeType.STATUS: "StatusAttributeMetadata",
    AttributeType.UNIQUEIDENTIFIER: "UniqueIdentifierAttributeMetadata",
    AttributeType.DATETIME: "DateTimeAttributeMetadata",
    AttributeType.BIGINT: "BigIntAttributeMetadata",
    AttributeType.OWNER: "LookupAttributeMetadata",  # an owner is a lookup to systemuser or team
    AttributeType.LOOKUP: "LookupAttributeMetadata",
}
_CAST_TYPES = {name: kind for kind, name in _TYPE_NAMES.items()}  # the Lookup cast also finds the owner (_is_of)
_STRING_FORMATS = {"emailaddress1": "Email", "websiteurl": "Url", "telephone1": "Phone"}
_ENTITY_TYPE = NAMESPACE + "EntityMetadata"
_ATTRIBUTE_TYPE = NAMESPACE + "AttributeMetadata"
_FILTER_PATHS = {"RequiredLevel/Value": lambda item: item["RequiredLevel"]["Value"],
                 "AttributeTypeName/Value": lambda item: item["AttributeTypeName"]["Value"]}


def label(text: str, key: str) -> dict:
    localized = {"Label": text, "LanguageCode": 1033, "IsManaged": False,
                 "MetadataId": metadata_id("label", key), "HasChanged": None}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def entity_definition(schema: Schema) -> dict:
    return {
        "@odata.type": "#" + _ENTITY_TYPE,
        "MetadataId": metadata_id(ENTITY),
        "LogicalName": ENTITY,
        "SchemaName": "Lead",
        "EntitySetName": "leads",
        "LogicalCollectionName": "leads",
        "CollectionSchemaName": "Leads",
        "PrimaryIdAttribute": PRIMARY_KEY,
        "PrimaryNameAttribute": "fullname",
        "ObjectTypeCode": 4,
        "OwnershipType": "UserOwned",
        "IsCustomEntity": False,
        "IsActivity": False,
        "DisplayName": label("Lead", ENTITY),
    }


def attribute(column: Column) -> dict:
    """The full metadata of `column`, as an unrestricted read of its derived type returns it."""
    kind = column.attribute_type
    item: dict[str, Any] = {
        "@odata.type": "#" + NAMESPACE + _TYPE_NAMES[kind],
        "MetadataId": metadata_id(ENTITY, column.logical_name),
        "LogicalName": column.logical_name,
        "SchemaName": column.logical_name,
        "EntityLogicalName": ENTITY,
        "AttributeType": kind.value,
        "AttributeTypeName": {"Value": f"{kind.value}Type"},
        "DisplayName": label(column.display_name, column.logical_name),
        "RequiredLevel": {"Value": column.required_level, "CanBeChanged": True,
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "IsValidForCreate": column.valid_for_create,
        "IsValidForUpdate": column.valid_for_update,
        "IsValidForRead": True,
        "IsCustomAttribute": column.is_custom,
        "IsPrimaryId": column.logical_name == PRIMARY_KEY,
        "IsPrimaryName": column.logical_name == "fullname",
    }
    if kind in (AttributeType.STRING, AttributeType.MEMO):
        item["MaxLength"] = column.max_length
        item["Format"] = "TextArea" if kind is AttributeType.MEMO else _STRING_FORMATS.get(column.logical_name, "Text")
    elif kind in (AttributeType.INTEGER, AttributeType.BIGINT):
        item["MinValue"], item["MaxValue"] = INT_MIN, INT_MAX
    elif kind is AttributeType.BOOLEAN:
        item["DefaultValue"] = False
    elif kind in CHOICE_TYPES:
        item["DefaultFormValue"] = column.options[0].value if kind is AttributeType.PICKLIST and column.options else -1
    elif kind is AttributeType.DATETIME:
        item["Format"] = "DateAndTime"
    elif kind in LOOKUP_TYPES:
        item["Targets"] = list(column.targets)
    return item


def _is_of(column: Column, cast: AttributeType) -> bool:
    """Whether `column` is read through the cast to `cast`'s metadata type."""
    return _TYPE_NAMES[column.attribute_type] == _TYPE_NAMES[cast]


_BASE_NAMES = frozenset(attribute(Column("x", AttributeType.UNIQUEIDENTIFIER, "x")))


def _option(column: Column, option: Option) -> dict:
    key = f"{column.logical_name}/{option.value}"
    return {"Value": option.value, "Label": label(option.label, key), "Description": label("", key + "/d"),
            "Color": None, "IsManaged": False, "ExternalValue": None, "MetadataId": None, "HasChanged": None}


def option_set(column: Column) -> dict:
    kind = column.attribute_type
    result = {
        "MetadataId": metadata_id("optionset", column.logical_name),
        "Name": f"{ENTITY}_{column.logical_name}",
        "IsGlobal": False,
        "IsCustomOptionSet": column.is_custom,
        "DisplayName": label(column.display_name, "optionset/" + column.logical_name),
    }
    if kind is AttributeType.BOOLEAN:
        result["OptionSetType"] = "Boolean"
        result["TrueOption"] = _option(column, Option(1, "Yes"))
        result["FalseOption"] = _option(column, Option(0, "No"))
    else:
        result["OptionSetType"] = kind.value
        result["Options"] = [_option(column, option) for option in column.options]
    return result


def _select(item: dict, query: Mapping[str, str], allowed: set[str], type_name: str) -> dict:
    names = [n.strip() for n in query.get("$select", "").split(",") if n.strip()]
    for name in names:
        if name not in allowed:
            raise unknown_property(name, type_name)
    if not names:
        return item
    return {k: v for k, v in item.items() if k in ("@odata.type", "MetadataId") or k in names}


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _expand(column: Column, query: Mapping[str, str], type_name: str) -> dict:
    expanded: dict[str, Any] = {}
    for part in _split_top_level(query.get("$expand", "")):
        match = re.fullmatch(r"(\w+)(?:\(\$select=([\w,]*)\))?", part)
        name = match.group(1) if match else part
        navigable = column.attribute_type in CHOICE_TYPES or column.attribute_type is AttributeType.BOOLEAN
        if not navigable or name not in ("OptionSet", "GlobalOptionSet") or match is None:
            raise unknown_property(name, type_name)
        if name == "GlobalOptionSet":
            expanded[name] = None
            continue
        full = option_set(column)
        expanded[name] = _select(full, {"$select": match.group(2) or ""}, set(full), NAMESPACE + "OptionSetMetadata")
    return expanded


def _attribute_view(column: Column, query: Mapping[str, str], cast: AttributeType | None) -> dict:
    full = attribute(column)
    allowed = set(full) if cast is not None else _BASE_NAMES
    type_name = NAMESPACE + _TYPE_NAMES[cast] if cast is not None else _ATTRIBUTE_TYPE
    selected = _select(full, query, allowed, type_name)
    return {**selected, **_expand(column, query, type_name)} if "$expand" in query else selected


def read(path: str, query: Mapping[str, str], *, base: str, schema: Schema) -> dict:
    """Answer a GET of `path` (relative to the API base). Raises ODataError 404/400 (400 also for a
    query option metadata reads refuse, such as $top or $orderby)."""
    check_options(query, METADATA_OPTIONS)
    match = _PATH.match(path)
    if match is None:
        raise resource_not_found(path.split("/")[-1])
    entity, nav, attr, cast_name = match.group("entity", "nav", "attribute", "cast")
    if match.group("entity_id"):
        entity = _entity_by_id(match.group("entity_id"))
    if match.group("attribute_id"):
        attr = _attribute_by_id(schema, match.group("attribute_id"))
    context = f"{base}/$metadata#"
    if entity is None:
        if nav is not None:
            raise resource_not_found(nav)
        definition = entity_definition(schema)
        rows = [definition]
        if "$filter" in query:
            where = parse_filter(query["$filter"], set(definition).__contains__, _ENTITY_TYPE)
            rows = [row for row in rows if where.matches(row)]
        return {"@odata.context": context + "EntityDefinitions",
                "value": [_select(row, query, set(definition), _ENTITY_TYPE) for row in rows]}
    if entity != ENTITY:
        raise ODataError(404, NOT_FOUND, f"Could not find entity with name '{entity}'.")
    if nav is None:
        definition = entity_definition(schema)
        return {"@odata.context": context + "EntityDefinitions/$entity",
                **_select(definition, query, set(definition), _ENTITY_TYPE)}
    if nav == "Keys":
        if attr is not None or cast_name is not None or match.group("optionset"):
            raise resource_not_found(path.split("/")[-1])
        rows = [_select(row, query, set(row), NAMESPACE + "EntityKeyMetadata") for row in _keys(schema)]
        return {"@odata.context": context + f"EntityDefinitions('{ENTITY}')/Keys", "value": rows}
    cast = None
    if cast_name is not None:
        cast = _CAST_TYPES.get(cast_name)
        if cast is None:
            raise resource_not_found(NAMESPACE + cast_name)
    context += f"EntityDefinitions('{ENTITY}')/Attributes"
    if attr is None:
        if match.group("optionset"):
            raise resource_not_found("OptionSet")
        return {"@odata.context": context, "value": _attributes(schema, query, cast)}
    column = schema.columns.get(attr)
    if column is None:
        raise ODataError(404, NOT_FOUND, f"Could not find attribute with name '{attr}' on entity '{ENTITY}'.")
    if cast is not None and not _is_of(column, cast):
        raise resource_not_found(NAMESPACE + cast_name)
    if match.group("optionset"):
        if cast is None or cast not in CHOICE_TYPES + (AttributeType.BOOLEAN,):
            raise resource_not_found("OptionSet")
        full = option_set(column)
        return {"@odata.context": context + "/OptionSet/$entity",
                **_select(full, query, set(full), NAMESPACE + "OptionSetMetadata")}
    return {"@odata.context": context + "/$entity", **_attribute_view(column, query, cast)}


def _entity_by_id(metadata_id_text: str) -> str:
    # The wording of a 404 for an unknown MetadataId is [UNCONFIRMED]; it mirrors the LogicalName one.
    if metadata_id_text.lower() != metadata_id(ENTITY):
        raise ODataError(404, NOT_FOUND, f"Could not find entity with MetadataId '{metadata_id_text}'.")
    return ENTITY


def _attribute_by_id(schema: Schema, metadata_id_text: str) -> str:
    wanted = metadata_id_text.lower()
    for name in schema.columns:
        if metadata_id(ENTITY, name) == wanted:
            return name
    raise ODataError(404, NOT_FOUND, f"Could not find attribute with MetadataId '{metadata_id_text}' on entity "
                                     f"'{ENTITY}'.")


def _attributes(schema: Schema, query: Mapping[str, str], cast: AttributeType | None) -> list[dict]:
    columns = [c for c in schema.columns.values() if cast is None or _is_of(c, cast)]
    if "$filter" in query:
        allowed = set(attribute(Column("x", cast or AttributeType.UNIQUEIDENTIFIER, "x"))) | set(_FILTER_PATHS)
        type_name = NAMESPACE + _TYPE_NAMES[cast] if cast is not None else _ATTRIBUTE_TYPE
        where = parse_filter(query["$filter"], allowed.__contains__, type_name)
        columns = [
            c for c in columns
            if where.matches({**(full := attribute(c)), **{p: get(full) for p, get in _FILTER_PATHS.items()}})
        ]
    return [_attribute_view(column, query, cast) for column in columns]


def _keys(schema: Schema) -> list[dict]:
    return [
        {
            "@odata.type": "#" + NAMESPACE + "EntityKeyMetadata",
            "MetadataId": metadata_id("key", key.name),
            "SchemaName": key.name,
            "LogicalName": key.name,
            "EntityLogicalName": ENTITY,
            "KeyAttributes": list(key.columns),
            "EntityKeyIndexStatus": key.status.value,
            "DisplayName": label(key.name, "key/" + key.name),
        }
        for key in schema.keys.values()
    ]

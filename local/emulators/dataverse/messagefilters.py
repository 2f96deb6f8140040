"""`GET sdkmessagefilters`: which SDK messages the org supports for which table (docs/dataverse.md 7.2).

Clients detect bulk support with
`sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq @message and primaryobjecttypecode
eq @table&@message='CreateMultiple'&@table='lead'`: a non-empty `value` means supported. The emulator holds one
row per (message, table) it serves; CreateMultiple/UpdateMultiple rows for `lead` exist only while bulk
support is on. UpsertMultiple has no row, as on the real service.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from local.emulators.dataverse.errors import ENTITY, QUERY_ERROR, ODataError, unknown_property
from local.emulators.dataverse.odata_filter import parse_filter

ENTITY_SET = "sdkmessagefilters"
TYPE_NAME = "Microsoft.Dynamics.CRM.sdkmessagefilter"
BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple")
_SINGLE_MESSAGES = ("Create", "Update", "Upsert", "Delete", "Retrieve", "RetrieveMultiple")
_COLUMNS = ("sdkmessagefilterid", "primaryobjecttypecode", "sdkmessageid/name")
_SELECTABLE = ("sdkmessagefilterid", "primaryobjecttypecode")
_ALIAS = re.compile(r"'(?:[^']|'')*'|@([A-Za-z_][A-Za-z0-9_]*)")
_ETAG = 'W/"2009110"'


def _row(message: str) -> dict:
    return {
        "sdkmessagefilterid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sdkmessagefilter/{message}/{ENTITY}")),
        "primaryobjecttypecode": ENTITY,
        "sdkmessageid/name": message,
    }


def rows(bulk_supported: bool) -> list[dict]:
    messages = _SINGLE_MESSAGES + (BULK_MESSAGES if bulk_supported else ())
    return [_row(message) for message in messages]


def query(params: Mapping[str, str], *, base: str, bulk_supported: bool) -> dict:
    """The `GET sdkmessagefilters` answer body. Raises ODataError 400 for an unknown property, a bad
    filter or an undefined parameter alias."""
    select = [name.strip() for name in params.get("$select", "sdkmessagefilterid").split(",") if name.strip()]
    for name in select:
        if name not in _SELECTABLE:
            raise unknown_property(name, TYPE_NAME)
    found = rows(bulk_supported)
    text = params.get("$filter")
    if text:
        where = parse_filter(_resolve_aliases(text, params), _COLUMNS.__contains__, TYPE_NAME)
        found = [row for row in found if where.matches(row)]
    return {
        "@odata.context": f"{base}/$metadata#{ENTITY_SET}({','.join(select)})",
        "value": [{"@odata.etag": _ETAG, **{name: row[name] for name in select}} for row in found],
    }


def _resolve_aliases(text: str, params: Mapping[str, str]) -> str:
    """Replace each `@alias` outside string literals by the literal the query string gives it."""

    def substitute(match: re.Match) -> str:
        alias = match.group(1)
        if alias is None:
            return match.group(0)
        value = params.get("@" + alias)
        if value is None:
            raise ODataError(400, QUERY_ERROR, f"The parameter alias '@{alias}' is not defined in the query.")
        return value

    return _ALIAS.sub(substitute, text)

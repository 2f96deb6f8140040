"""How rows are ordered and annotated: `$orderby` with Dataverse's collation, keyset paging, and
`OData.Community.Display.V1.FormattedValue` annotations.

Dataverse sorts strings ignoring case, puts nulls first when ascending (last when descending, as
SQL Server does), sorts choice columns by their label, not their value (FetchXML needs
`useraworderby` to sort by value), and GUIDs in SQL Server's byte order, not as text. Rows that
tie, and every query without `$orderby`, fall back to creation order, which the emulator uses for
"unspecified".
"""
from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from local.emulators.dataverse.queryoptions import FORMATTED_VALUE, Cursor, Order
from local.emulators.dataverse.schema import CHOICE_TYPES, LOOKUP_TYPES, AttributeType, Column, Schema

Row = tuple[int, dict]  # (creation sequence, record)
_BOOLEAN_LABELS = {True: "Yes", False: "No"}  # the labels metadata.option_set gives two-option columns
_GUID_BYTE_ORDER = (10, 11, 12, 13, 14, 15, 8, 9, 6, 7, 4, 5, 0, 1, 2, 3)  # as SqlGuid compares
_GUID_TYPES = (AttributeType.UNIQUEIDENTIFIER, *LOOKUP_TYPES)  # a lookup sorts by its id here, not its name
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"


def _guid_key(text: str) -> bytes:
    """SQL Server's uniqueidentifier order: the last six bytes weigh most, the first four least."""
    raw = uuid.UUID(text).bytes_le
    return bytes(raw[i] for i in _GUID_BYTE_ORDER)


def _key(column: Column | None, value: Any) -> tuple:
    if value is None:
        return (0,)
    if column is not None and column.attribute_type in _GUID_TYPES:
        return (1, _guid_key(value))
    if column is not None and column.attribute_type in CHOICE_TYPES:
        label = next((o.label for o in column.options if o.value == value), str(value))
        return (1, label.casefold())
    if isinstance(value, str):
        return (1, value.casefold())
    return (1, value)


def _compare(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


class Ordering:
    """The sort order of one query over `schema`."""

    def __init__(self, schema: Schema, orders: Sequence[Order]) -> None:
        self.orders = list(orders)
        self._columns = [schema.properties.get(order.column) for order in self.orders]

    def keys(self, values: Sequence[Any]) -> tuple:
        return tuple(_key(column, value) for column, value in zip(self._columns, values, strict=True))

    def row_keys(self, row: Row) -> tuple:
        return self.keys([row[1].get(order.column) for order in self.orders])

    def _cmp(self, a: tuple[tuple, int], b: tuple[tuple, int]) -> int:
        for order, left, right in zip(self.orders, a[0], b[0], strict=True):
            result = _compare(left, right)
            if result:
                return -result if order.descending else result
        return _compare(a[1], b[1])

    def sort(self, rows: list[Row]) -> list[Row]:
        if not self.orders:
            return sorted(rows, key=lambda row: row[0])
        keyed = functools.cmp_to_key(self._cmp)
        return sorted(rows, key=lambda row: keyed((self.row_keys(row), row[0])))

    def after(self, rows: list[Row], cursor: Cursor) -> list[Row]:
        """The rows of the sorted `rows` that come after the cursor's row."""
        mark = (self.keys(cursor.values), cursor.sequence)
        return [row for row in rows if self._cmp((self.row_keys(row), row[0]), mark) > 0]


def formatted_value(column: Column, value: Any) -> str | None:
    """The label Dataverse gives a value in `<column>@OData.Community.Display.V1.FormattedValue`,
    or None when it gives none."""
    if value is None:
        return None
    kind = column.attribute_type
    if kind in CHOICE_TYPES:
        return next((option.label for option in column.options if option.value == value), None)
    if kind is AttributeType.BOOLEAN:
        return _BOOLEAN_LABELS.get(value)
    if kind is AttributeType.INTEGER:
        return f"{value:,}"
    return None


def annotate(item: dict, schema: Schema, includes: Callable[[str], bool]) -> dict:
    """`item` with, when asked for, a formatted value before each column that has one and the table
    of each lookup's record (`lookuplogicalname`)."""
    labels, tables = includes(FORMATTED_VALUE), includes(LOOKUP_LOGICAL_NAME)
    if not labels and not tables:
        return item
    result: dict = {}
    for name, value in item.items():
        column = schema.properties.get(name)
        label = formatted_value(column, value) if column is not None and labels else None
        if label is not None:
            result[f"{name}@{FORMATTED_VALUE}"] = label
        if tables and column is not None and column.attribute_type in LOOKUP_TYPES and value is not None:
            result[f"{name}@{LOOKUP_LOGICAL_NAME}"] = column.targets[0]
        result[name] = value
    return result

"""The one place where OData literals are escaped and URL-encoded.

A value reaches Dataverse unchanged and can never alter the filter or the key it sits in: inside a
string literal a `'` is doubled, and the literal is then percent-encoded so `& # ? + / %` travel
as data, not as URL syntax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Left readable in the query: OData syntax, and harmless inside a literal once its quotes are doubled.
_SAFE_IN_QUERY = "',()$"
_SAFE_IN_KEY = "'"


def string_literal(value: str) -> str:
    """`o'brien` -> `'o''brien'` (not yet URL-encoded)."""
    return "'" + value.replace("'", "''") + "'"


def key_segment(key: Mapping[str, str | int]) -> str:
    """`{"hnt_domain": "x/y"}` -> `(hnt_domain='x%2Fy')`; integers unquoted. Raises ValueError
    for an empty key, a malformed column name or a value that is neither str nor int."""
    if not key:
        raise ValueError("an alternate key needs at least one column")
    parts = [f"{_name(column)}={quote(_literal(value), safe=_SAFE_IN_KEY)}" for column, value in key.items()]
    return "(" + ",".join(parts) + ")"


def filter_eq_any(pairs: Sequence[tuple[str, str]]) -> str:
    """`[("emailaddress1", "a"), ("websiteurl", "b")]` -> `emailaddress1 eq 'a' or websiteurl eq 'b'`.
    Raises ValueError for an empty list or a malformed column name."""
    if not pairs:
        raise ValueError("a filter needs at least one condition")
    return " or ".join(f"{_name(column)} eq {string_literal(value)}" for column, value in pairs)


def filter_in(column: str, values: Sequence[str]) -> str:
    """`("emailaddress1", ["a", "b"])` ->
    `Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=["a","b"])`.
    The values are JSON strings (docs/dataverse.md 4: array-valued functions take double quotes).
    Raises ValueError for no values or a malformed column name."""
    if not values:
        raise ValueError("In needs at least one value")
    items = ",".join(json.dumps(str(value), ensure_ascii=False) for value in values)
    return f"Microsoft.Dynamics.CRM.In(PropertyName='{_name(column)}',PropertyValues=[{items}])"


def query_string(params: Mapping[str, str]) -> str:
    """`{"$filter": "a eq 'x&y'"}` -> `$filter=a%20eq%20'x%26y'`, ready to follow a `?`."""
    return "&".join(f"{name}={quote(value, safe=_SAFE_IN_QUERY)}" for name, value in params.items())


def _literal(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"key values must be text or whole numbers, got {type(value).__name__}")
    return str(value) if isinstance(value, int) else string_literal(value)


def _name(column: str) -> str:
    if not _NAME.match(column):
        raise ValueError(f"not a column logical name: {column!r}")
    return column

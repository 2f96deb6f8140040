"""Parsing of entity key segments: `leads(<guid>)`, `leads(col='v')`, `leads(a='x',b=5)`."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from local.emulators.dataverse.errors import QUERY_ERROR, ODataError
from local.emulators.dataverse.odata_filter import read_string_literal

_BARE_VALUE = re.compile(r"[^,)'\s]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class KeySegment:
    """`lead_id` for a primary-key segment, else `values` (column -> str or int) of an alternate key."""

    text: str
    lead_id: str | None = None
    values: tuple[tuple[str, Any], ...] = ()


def parse_guid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _bad_key(text: str) -> ODataError:
    return ODataError(400, QUERY_ERROR, f"Bad Request - Error in query syntax: invalid key segment '({text})'.")


def parse_key_segment(text: str) -> KeySegment:
    """Parse the (already URL-decoded) text between the parentheses.

    Raises ODataError 400 for a malformed segment.
    """
    stripped = text.strip()
    if "=" not in stripped and "'" not in stripped:
        lead_id = parse_guid(stripped)
        if lead_id is None:
            raise _bad_key(text)
        return KeySegment(text, lead_id=lead_id)
    values: list[tuple[str, Any]] = []
    i = 0
    while True:
        match = _NAME.match(text, i)
        if match is None:
            raise _bad_key(text)
        i = match.end()
        if i >= len(text) or text[i] != "=":
            raise _bad_key(text)
        value, i = _read_value(text, i + 1)
        values.append((match.group(), value))
        if i == len(text):
            break
        if text[i] != ",":
            raise _bad_key(text)
        i += 1
    names = [name for name, _ in values]
    if len(set(names)) != len(names):
        raise _bad_key(text)
    if names == ["leadid"]:
        lead_id = parse_guid(str(values[0][1]))
        if lead_id is None:
            raise _bad_key(text)
        return KeySegment(text, lead_id=lead_id)
    return KeySegment(text, values=tuple(values))


def _read_value(text: str, i: int) -> tuple[Any, int]:
    if i < len(text) and text[i] == "'":
        return read_string_literal(text, i, shown=f"({text})")
    match = _BARE_VALUE.match(text, i)
    if match is None:
        raise _bad_key(text)
    raw = match.group()
    try:
        return int(raw), match.end()
    except ValueError:
        guid = parse_guid(raw)
        if guid is None:
            raise _bad_key(text) from None
        return guid, match.end()

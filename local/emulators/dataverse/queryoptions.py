"""The query options and preferences of a read: which are allowed, `$orderby`, `$top`, `$count`,
`Prefer` (`odata.maxpagesize`, `odata.include-annotations`) and the `$skiptoken` paging cookie.

Dataverse refuses `$skip` and query options it does not know with 400 (docs/dataverse.md 4); `$apply`
is real Dataverse but not emulated, so it answers 501 rather than pretending to be refused.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from local.emulators.dataverse.errors import QUERY_ERROR, ODataError, unknown_property, unsupported_query_option

MAX_PAGE_SIZE = 5000  # the largest page and the count cap (docs/dataverse.md 4; QUERY "Page results", "Count rows")
SYSTEM_OPTIONS = frozenset({
    "$select", "$filter", "$orderby", "$top", "$skip", "$count", "$expand", "$apply", "$skiptoken", "$search",
    "$format", "$compute", "$levels", "$index", "$schemaversion", "$deltatoken", "$id",
})
COLLECTION_OPTIONS = frozenset({"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken"})
ENTITY_OPTIONS = frozenset({"$select", "$expand"})
METADATA_OPTIONS = frozenset({"$select", "$filter", "$expand"})
FORMATTED_VALUE = "OData.Community.Display.V1.FormattedValue"
_ORDER_ITEM = re.compile(r"^\s*(?P<name>[^\s]+)(?:\s+(?P<direction>\S+))?\s*$")
_PAGING_COOKIE = re.compile(
    r'^<cookie pagenumber="(?P<page>\d+)" pagingcookie="(?P<inner>[^"]*)" istracking="False" />$'
)
_COOKIE_ROOT = re.compile(r'^<cookie page="\d+" sequence="(?P<sequence>\d+)">')
_COOKIE_COLUMN = re.compile(r'<(?P<name>[a-z_][a-z0-9_]*) last="(?P<last>[^"]*)"(?P<null> null="1")? first="[^"]*" />')


@dataclass
class PageLimit:
    """The server's largest page: Dataverse's 5000 unless a test lowers it so paging is exercised.
    A page asked for with `Prefer: odata.maxpagesize` is never larger."""

    size: int = MAX_PAGE_SIZE
    default: int = field(init=False)

    def __post_init__(self) -> None:
        self.set(self.size)
        self.default = self.size

    def set(self, size: int) -> None:
        """Raises ValueError unless 1 <= size <= 5000."""
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"the page size must be a whole number from 1 to {MAX_PAGE_SIZE}")
        self.size = size

    def reset(self) -> None:
        self.size = self.default

    def page_size(self, asked: int | None) -> int:
        return min(asked or self.size, self.size)


def check_options(query: Mapping[str, str], allowed: frozenset[str]) -> None:
    """Refuse the system query options this resource does not take.

    Raises ODataError 400 0x80060888 for `$skip`, an unknown `$` option or one this resource
    refuses; 501 for `$apply`. Custom options and `@` parameter aliases pass (OData ignores them).
    """
    for name in query:
        if not name.startswith("$") or name in allowed:
            continue
        if name == "$apply":
            raise ODataError(501, QUERY_ERROR, "$apply is not implemented by the local Dataverse emulator.")
        raise unsupported_query_option(name)


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool = False

    def text(self) -> str:
        return f"{self.column} {'desc' if self.descending else 'asc'}"


def parse_orderby(text: str | None, is_property: Any, type_name: str) -> list[Order]:
    """`name asc, createdon desc` -> [Order]. Raises ODataError 400 for an unknown column (0x0, as
    `$select` does) or a direction other than asc/desc."""
    if text is None:
        return []
    orders: list[Order] = []
    position = 0
    for item in text.split(","):
        match = _ORDER_ITEM.match(item)
        if match is None:
            raise ODataError(400, QUERY_ERROR, f"Expression expected at position {position} in '{text}'.")
        name, direction = match.group("name", "direction")
        if not is_property(name):
            raise unknown_property(name, type_name)
        if direction not in (None, "asc", "desc"):
            at = position + match.start("direction")
            raise ODataError(400, QUERY_ERROR, f"Syntax error at position {at} in '{text}'.")
        orders.append(Order(name, direction == "desc"))
        position += len(item) + 1
    return orders


def parse_top(query: Mapping[str, str]) -> int | None:
    """Raises ODataError 400 for a value that is not a whole number >= 0."""
    if "$top" not in query:
        return None
    text = query["$top"]
    if not text.isdigit():
        raise ODataError(400, QUERY_ERROR, f"Invalid value '{text}' for $top query option.")
    return int(text)


def parse_count(query: Mapping[str, str]) -> bool:
    """Raises ODataError 400 for anything but true/false."""
    text = query.get("$count")
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise ODataError(400, QUERY_ERROR, f"'{text}' is not a valid count option.")


@dataclass(frozen=True)
class Preferences:
    """The `Prefer` header: `max_page_size` None when absent or ignored (over 5000, not a number),
    `annotations` the `odata.include-annotations` pattern as sent, `representation` for return=representation."""

    max_page_size: int | None = None
    annotations: str | None = None
    representation: bool = False

    def includes(self, term: str) -> bool:
        """Whether `term` is among the annotations asked for (`*`, `ns.*`, exact, `-` excludes)."""
        if self.annotations is None:
            return False
        included = False
        for pattern in (p.strip() for p in self.annotations.split(",")):
            excluded = pattern.startswith("-")
            pattern = pattern.removeprefix("-")
            if pattern == "*" or pattern == term or (pattern.endswith(".*") and term.startswith(pattern[:-1])):
                if excluded:
                    return False
                included = True
        return included

    def applied(self, *, paging: bool, page_size: int | None = None) -> list[str]:
        """The `Preference-Applied` items for a response (paging only for collections, with the
        `page_size` used when the server's limit made it smaller than asked)."""
        items = []
        if paging and self.max_page_size is not None:
            items.append(f"odata.maxpagesize={page_size or self.max_page_size}")
        if self.annotations is not None:
            items.append(f'odata.include-annotations="{self.annotations}"')
        return items


def _split_preferences(header: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_prefer(header: str | None) -> Preferences:
    """Read the preferences the emulator honours; OData ignores unknown or malformed ones."""
    page_size: int | None = None
    annotations: str | None = None
    representation = False
    for item in _split_preferences(header or ""):
        name, _, value = (part.strip() for part in item.partition("="))
        name = name.lower()
        if name == "odata.maxpagesize" and value.isdigit() and 0 < int(value) <= MAX_PAGE_SIZE:
            page_size = int(value)
        elif name == "odata.include-annotations" and value.strip('"'):
            annotations = value.strip('"')
        elif name == "return" and value == "representation":
            representation = True
    return Preferences(page_size, annotations, representation)


# -- the paging cookie -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the page number that follows, the last row's ordered values and sequence."""

    page: int
    values: tuple[Any, ...]
    sequence: int


def _attribute(value: Any) -> str:
    text = "" if value is None else str(int(value)) if isinstance(value, bool) else str(value)
    return '"' + escape(text, {'"': "&quot;"}) + '"'


def encode_skiptoken(page: int, orders: list[Order], last: Mapping[str, Any], first: Mapping[str, Any],
                     primary_key: str, sequence: int) -> str:
    """A `$skiptoken` shaped like Dataverse's: an outer cookie carrying the next page number and a
    URL-encoded inner cookie with the ordered columns' and the primary key's last and first values.
    The inner cookie also carries the last row's creation `sequence`, the emulator's tie-breaker."""
    parts = []
    for column in [order.column for order in orders] + [primary_key]:
        last_value, first_value = last.get(column), first.get(column)
        if column == primary_key:
            last_value, first_value = "{" + str(last_value).upper() + "}", "{" + str(first_value).upper() + "}"
        null = ' null="1"' if last_value is None else ""
        parts.append(f"<{column} last={_attribute(last_value)}{null} first={_attribute(first_value)} />")
    inner = quote(f'<cookie page="{page - 1}" sequence="{sequence}">' + "".join(parts) + "</cookie>", safe="")
    inner = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), inner)  # Dataverse writes %3c, not %3C
    return f'<cookie pagenumber="{page}" pagingcookie="{inner}" istracking="False" />'


def decode_skiptoken(token: str, orders: list[Order], primary_key: str, kinds: Mapping[str, str]) -> Cursor:
    """Read a token made by `encode_skiptoken` for the same `$orderby`; `kinds[column]` is "int",
    "bool" or "str" to restore typed values. Raises ODataError 400 for any other token."""
    invalid = ODataError(400, QUERY_ERROR, "The $skiptoken query option value is not valid.")
    match = _PAGING_COOKIE.match(token)
    inner = unquote(match.group("inner")) if match else ""
    root = _COOKIE_ROOT.match(inner)
    columns = list(_COOKIE_COLUMN.finditer(inner))
    expected = [order.column for order in orders] + [primary_key]
    if match is None or root is None or [column.group("name") for column in columns] != expected:
        raise invalid
    values: list[Any] = []
    for column in columns[:-1]:
        text = _unescape(column.group("last"))
        kind = kinds.get(column.group("name"), "str")
        if column.group("null"):
            values.append(None)
        elif kind == "int":
            try:
                values.append(int(text))
            except ValueError:
                raise invalid from None
        elif kind == "bool":
            values.append(text == "1")
        else:
            values.append(text)
    return Cursor(int(match.group("page")), tuple(values), int(root.group("sequence")))


def _unescape(text: str) -> str:
    return text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


_LINK_SAFE = "$',()=@/:"


def next_link(base: str, query: Mapping[str, str], skiptoken: str) -> str:
    """`base?<the same options>&$skiptoken=...`, every value percent-encoded."""
    pairs = [(name, value) for name, value in query.items() if name != "$skiptoken"] + [("$skiptoken", skiptoken)]
    return base + "?" + "&".join(f"{quote(name, safe='$@')}={quote(value, safe=_LINK_SAFE)}" for name, value in pairs)

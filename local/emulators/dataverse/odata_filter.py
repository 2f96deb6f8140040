"""A small OData `$filter` parser for the expressions clients send.

Supports `eq ne gt ge lt le` against string, number, GUID, null, true/false and enum literals
(`Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'`), `contains/startswith/endswith`, the Dataverse
query functions `Microsoft.Dynamics.CRM.In` and `NotIn` (`PropertyValues` a `[...]` of single- or
double-quoted strings or numbers), parameter aliases (`@p1`, resolved from the query string), `and`,
`or`, `not` and parentheses. String comparisons ignore case, as Dataverse's do. A date-time literal
(unquoted ISO 8601 with an offset, `modifiedon ge 2026-12-03T10:00:00Z`) is compared as an instant
with the record's stored UTC text, whatever its offset or precision.
"""
from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from local.emulators.dataverse.errors import NO_SUCH_ATTRIBUTE, QUERY_ERROR, ODataError, unknown_property

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")
_NUMBER = re.compile(r"-?\d+(\.\d+)?\b")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./]*")
_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
_ALIAS = re.compile(r"@[A-Za-z_][A-Za-z0-9_]*")
_DATETIME_EDM = "Edm.DateTimeOffset"
_FUNCTIONS = ("contains", "startswith", "endswith")
_CRM_NAMESPACE = "Microsoft.Dynamics.CRM."
_SET_FUNCTIONS = ("In", "NotIn")
_KEYWORD_LITERALS = {"null": None, "true": True, "false": False}

Coerce = Callable[[str, str], Any]
EdmOf = Callable[[str], "str | None"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_NUMERIC_TYPES = frozenset({"Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"})
_OPERATOR_KINDS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
                   "lt": "LessThan", "le": "LessThanOrEqual"}


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "literal", "dquoted" (a "..." array item), "alias", "(", ")", ",", "[", "]", "="
    value: Any
    position: int
    edm: str | None = None  # a literal's type; None for null and enum members, which suit any column


@dataclass(frozen=True)
class Filter:
    """A parsed filter: `matches(record)`, and `lookups` = the (column, value) pairs that every
    matching record has one of, or None when the filter cannot be answered from an equality index."""

    matches: Callable[[dict], bool]
    lookups: frozenset[tuple[str, Any]] | None


def fold(value: Any) -> Any:
    """The form values are compared in: strings ignore case."""
    return value.casefold() if isinstance(value, str) else value


def _syntax_error(text: str, position: int, what: str = "Syntax error") -> ODataError:
    return ODataError(400, QUERY_ERROR, f"{what} at position {position} in '{text}'.")


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens. Raises ODataError 400 on an unterminated literal or a stray character."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "(),[]=":
            tokens.append(Token(char, char, i))
            i += 1
        elif char == '"':
            start = i
            try:
                value, i = json.JSONDecoder().raw_decode(text, i)
            except ValueError:
                raise ODataError(
                    400, QUERY_ERROR, f"There is an unterminated literal at position {len(text)} in '{text}'."
                ) from None
            tokens.append(Token("dquoted", value, start))
        elif match := _ALIAS.match(text, i):
            tokens.append(Token("alias", match.group(), i))
            i = match.end()
        elif char == "'":
            start = i
            value, i = read_string_literal(text, i)
            tokens.append(Token("literal", value, start, "Edm.String"))
        elif match := _GUID.match(text, i):
            tokens.append(Token("literal", match.group().lower(), i, "Edm.Guid"))
            i = match.end()
        elif match := _DATETIME.match(text, i):
            tokens.append(Token("literal", match.group(), i, _DATETIME_EDM))
            i = match.end()
        elif match := _NUMBER.match(text, i):
            number = match.group()
            if match.group(1):
                tokens.append(Token("literal", float(number), i, "Edm.Decimal"))
            else:
                edm = "Edm.Int32" if INT32_MIN <= int(number) <= INT32_MAX else "Edm.Int64"
                tokens.append(Token("literal", int(number), i, edm))
            i = match.end()
        elif match := _NAME.match(text, i):
            name = match.group()
            i = match.end()
            if i < len(text) and text[i] == "'":  # enum literal: Namespace.EnumType'Member'
                value, i = read_string_literal(text, i)
                tokens.append(Token("literal", value, match.start()))
            elif name in _KEYWORD_LITERALS:
                literal = _KEYWORD_LITERALS[name]
                tokens.append(Token("literal", literal, match.start(), None if literal is None else "Edm.Boolean"))
            else:
                tokens.append(Token("name", name, match.start()))
        else:
            raise _syntax_error(text, i, f"Syntax error: character '{char}' is not valid")
    return tokens


def read_string_literal(text: str, start: int, *, shown: str | None = None) -> tuple[str, int]:
    """The quoted literal at text[start] ('' is a quote) and the index after it.

    Raises ODataError for an unterminated literal, quoting `shown` (default: `text`).
    """
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                chars.append("'")
                i += 2
                continue
            return "".join(chars), i + 1
        chars.append(text[i])
        i += 1
    # OData reports the position where the text ran out, e.g. 21 for "lastname eq 'O'Bryan'".
    raise ODataError(400, QUERY_ERROR,
                     f"There is an unterminated literal at position {len(text)} in '{shown or text}'.")


class _Parser:
    def __init__(
        self,
        text: str,
        is_property: Callable[[str], bool],
        type_name: str,
        aliases: Mapping[str, str],
        coerce: Coerce,
        edm_of: EdmOf | None,
    ) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.is_property = is_property
        self.type_name = type_name
        self.aliases = aliases
        self.coerce = coerce
        self.edm_of = edm_of

    def parse(self) -> Filter:
        if not self.tokens:
            raise _syntax_error(self.text, 0, "Expression expected")
        result = self._or()
        if self.index < len(self.tokens):
            raise _syntax_error(self.text, self.tokens[self.index].position)
        return result

    def _peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _next(self) -> Token:
        token = self._peek()
        if token is None:
            raise _syntax_error(self.text, len(self.text), "Expression expected")
        self.index += 1
        return token

    def _accept_word(self, *words: str) -> str | None:
        token = self._peek()
        if token is not None and token.kind == "name" and token.value in words:
            self.index += 1
            return token.value
        return None

    def _expect(self, kind: str) -> Token:
        token = self._peek()
        if token is None or token.kind != kind:
            position = len(self.text) if token is None else token.position
            raise _syntax_error(self.text, position, f"'{kind}' expected")
        self.index += 1
        return token

    def _or(self) -> Filter:
        result = self._and()
        while self._accept_word("or"):
            left, right = result, self._and()
            lookups = left.lookups | right.lookups if left.lookups is not None and right.lookups is not None else None
            result = Filter(lambda r, a=left.matches, b=right.matches: a(r) or b(r), lookups)
        return result

    def _and(self) -> Filter:
        result = self._unary()
        while self._accept_word("and"):
            left, right = result, self._unary()
            lookups = left.lookups if left.lookups is not None else right.lookups
            result = Filter(lambda r, a=left.matches, b=right.matches: a(r) and b(r), lookups)
        return result

    def _unary(self) -> Filter:
        if self._accept_word("not"):
            inner = self._unary()
            return Filter(lambda r, f=inner.matches: not f(r), None)
        token = self._peek()
        if token is not None and token.kind == "(":
            self.index += 1
            inner = self._or()
            self._expect(")")
            return inner
        return self._comparison()

    def _property(self) -> str:
        token = self._next()
        if token.kind != "name":
            raise _syntax_error(self.text, token.position, "Property name expected")
        if not self.is_property(token.value):
            raise unknown_property(token.value, self.type_name)
        return token.value

    def _literal(self) -> Any:
        return self._literal_token().value

    def _literal_token(self) -> Token:
        token = self._next()
        if token.kind == "alias":
            return self._alias(token, array=False)
        if token.kind != "literal":
            raise _syntax_error(self.text, token.position, "Literal expected")
        return token

    def _alias(self, token: Token, *, array: bool) -> Any:
        """The literal token (or array) that parameter alias `@name` holds; OData reads a missing alias as null."""
        text = self.aliases.get(token.value)
        if text is None:
            return None if array else Token("literal", None, token.position)
        inner = _Parser(text, self.is_property, self.type_name, {}, self.coerce, None)
        value = inner._array() if array else inner._literal_token()
        if inner.index < len(inner.tokens):
            raise _syntax_error(text, inner.tokens[inner.index].position)
        return value

    def _array(self) -> list[Any]:
        token = self._peek()
        if token is not None and token.kind == "alias":
            self.index += 1
            value = self._alias(token, array=True)
            if not isinstance(value, list):
                raise _syntax_error(self.text, token.position, "Collection expected")
            return value
        self._expect("[")
        items: list[Any] = []
        while True:
            token = self._next()
            if token.kind not in ("literal", "dquoted") or token.value is None:
                raise _syntax_error(self.text, token.position, "Literal expected")
            items.append(token.value)
            if self._expect_one_of(",", "]") == "]":
                return items

    def _expect_one_of(self, *kinds: str) -> str:
        token = self._peek()
        if token is None or token.kind not in kinds:
            position = len(self.text) if token is None else token.position
            raise _syntax_error(self.text, position, f"'{kinds[-1]}' expected")
        self.index += 1
        return token.kind

    def _query_function(self, name: str, position: int) -> Filter:
        """`Microsoft.Dynamics.CRM.In(PropertyName='col',PropertyValues=[...])` and `NotIn`."""
        function = name[len(_CRM_NAMESPACE):]
        if function not in _SET_FUNCTIONS:
            raise ODataError(501, QUERY_ERROR, f"The query function '{name}' is not implemented by the local "
                                               "Dataverse emulator.")
        self._expect("(")
        arguments: dict[str, Any] = {}
        while True:
            token = self._expect("name")
            if token.value not in ("PropertyName", "PropertyValues") or token.value in arguments:
                raise _syntax_error(self.text, token.position, f"Parameter '{token.value}' is not valid")
            self._expect("=")
            arguments[token.value] = self._literal() if token.value == "PropertyName" else self._array()
            if self._expect_one_of(",", ")") == ")":
                break
        column = arguments.get("PropertyName")
        values = arguments.get("PropertyValues")
        if not isinstance(column, str) or values is None:
            raise _syntax_error(self.text, position, f"'{name}' needs PropertyName and PropertyValues")
        if not self.is_property(column):
            raise ODataError(400, NO_SUCH_ATTRIBUTE, f"'{self.type_name.rsplit('.', 1)[-1]}' entity doesn't "
                                                     f"contain attribute with Name = '{column}' and NameMapping = "
                                                     "'Logical'.")
        wanted = frozenset(fold(self.coerce(column, str(value))) for value in values)
        if function == "In":
            return Filter(lambda r: fold(r.get(column)) in wanted,
                          frozenset((column, value) for value in wanted))
        return Filter(lambda r: r.get(column) is not None and fold(r.get(column)) not in wanted, None)

    def _comparison(self) -> Filter:
        token = self._peek()
        if token is not None and token.kind == "name" and token.value.startswith(_CRM_NAMESPACE):
            self.index += 1
            return self._query_function(token.value, token.position)
        if function := self._accept_word(*_FUNCTIONS):
            self._expect("(")
            name = self._property()
            self._expect(",")
            needle = self._literal_token()
            self._expect(")")
            if self._edm(name) not in (None, "Edm.String") or needle.edm not in (None, "Edm.String"):
                raise ODataError(400, QUERY_ERROR, f"No function signature for the function with name '{function}' "
                                                   "matches the specified arguments. The function signatures "
                                                   f"considered are: {function}(Edm.String Nullable=true, "
                                                   "Edm.String Nullable=true).")
            return _function(function, name, needle.value)
        name = self._property()
        token = self._next()
        if token.kind != "name" or token.value not in _COMPARISONS:
            raise _syntax_error(self.text, token.position, "Comparison operator expected")
        literal = self._literal_token()
        column_edm = self._edm(name)
        if not _compatible(column_edm, literal.edm):
            raise ODataError(400, QUERY_ERROR, "A binary operator with incompatible types was detected. Found "
                                               f"operand types '{column_edm}' and '{literal.edm}' for operator kind "
                                               f"'{_OPERATOR_KINDS[token.value]}'.")
        if literal.edm == _DATETIME_EDM:
            return _compare(token.value, name, _instant(literal.value), read=_instant, indexed=False)
        return _compare(token.value, name, literal.value)

    def _edm(self, name: str) -> str | None:
        return self.edm_of(name) if self.edm_of is not None else None


def _compatible(column: str | None, literal: str | None) -> bool:
    if column is None or literal is None:
        return True
    if column in _NUMERIC_TYPES:
        return literal in _NUMERIC_TYPES
    return column == literal


def _instant(value: Any) -> Any:
    """A date-time text as an aware datetime, so instants compare whatever their form; other values unchanged."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return value
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def _compare(operator: str, name: str, literal: Any, *, read: Callable[[Any], Any] = fold,
             indexed: bool = True) -> Filter:
    """`read` turns a record's value into the form `literal` is compared in; `indexed` says whether an
    `eq` can be answered from the store's equality index (which holds folded values)."""
    expected = read(literal)
    if operator == "eq":
        lookups = frozenset({(name, expected)}) if literal is not None and indexed else None
        return Filter(lambda r: read(r.get(name)) == expected, lookups)
    if operator == "ne":
        return Filter(lambda r: read(r.get(name)) != expected, None)
    if literal is None:
        return Filter(lambda r: False, None)
    test = {
        "gt": lambda a: a > expected,
        "ge": lambda a: a >= expected,
        "lt": lambda a: a < expected,
        "le": lambda a: a <= expected,
    }[operator]

    def matches(record: dict) -> bool:
        actual = read(record.get(name))
        try:
            return actual is not None and test(actual)
        except TypeError:
            return False

    return Filter(matches, None)


def _function(function: str, name: str, needle: Any) -> Filter:
    expected = fold(needle)
    if not isinstance(expected, str):
        return Filter(lambda r: False, None)
    test = {"contains": str.__contains__, "startswith": str.startswith, "endswith": str.endswith}[function]

    def matches(record: dict) -> bool:
        actual = record.get(name)
        return isinstance(actual, str) and test(actual.casefold(), expected)

    return Filter(matches, None)


def _as_text(column: str, text: str) -> Any:
    return text


def parse_filter(
    text: str,
    is_property: Callable[[str], bool],
    type_name: str,
    *,
    aliases: Mapping[str, str] | None = None,
    coerce: Coerce = _as_text,
    edm_of: EdmOf | None = None,
) -> Filter:
    """Parse `text`; `aliases` maps `@name` to its raw query-string value, `coerce(column, text)`
    turns a `PropertyValues` item into the column's type (raising ODataError 400 when it cannot),
    `edm_of(column)` gives a column's Edm type so a literal of another type is refused as OData does
    (a quoted '86' against a whole number, an unquoted GUID against text).

    Raises ODataError 400: "Could not find a property named ..." for an unknown property,
    0x80041103 for a query function naming an unknown column, "There is an unterminated literal ..."
    or a syntax error otherwise; 501 for a Dataverse query function the emulator lacks."""
    return _Parser(text, is_property, type_name, aliases or {}, coerce, edm_of).parse()

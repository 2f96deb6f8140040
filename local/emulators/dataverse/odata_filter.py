"""A small OData `$filter` parser for the expressions clients send.

Supports `eq ne gt ge lt le` against string, number, GUID, null, true/false and enum literals
(`Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'`), `contains/startswith/endswith`, `and`, `or`,
`not` and parentheses. String comparisons ignore case, as Dataverse's do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from local.emulators.dataverse.errors import QUERY_ERROR, ODataError, unknown_property

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_NUMBER = re.compile(r"-?\d+(\.\d+)?\b")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./]*")
_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
_FUNCTIONS = ("contains", "startswith", "endswith")
_KEYWORD_LITERALS = {"null": None, "true": True, "false": False}


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "literal", "(", ")", ","
    value: Any
    position: int


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
        elif char in "(),":
            tokens.append(Token(char, char, i))
            i += 1
        elif char == "'":
            start = i
            value, i = read_string_literal(text, i)
            tokens.append(Token("literal", value, start))
        elif match := _GUID.match(text, i):
            tokens.append(Token("literal", match.group().lower(), i))
            i = match.end()
        elif match := _NUMBER.match(text, i):
            number = match.group()
            tokens.append(Token("literal", float(number) if match.group(1) else int(number), i))
            i = match.end()
        elif match := _NAME.match(text, i):
            name = match.group()
            i = match.end()
            if i < len(text) and text[i] == "'":  # enum literal: Namespace.EnumType'Member'
                value, i = read_string_literal(text, i)
                tokens.append(Token("literal", value, match.start()))
            elif name in _KEYWORD_LITERALS:
                tokens.append(Token("literal", _KEYWORD_LITERALS[name], match.start()))
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
    def __init__(self, text: str, is_property: Callable[[str], bool], type_name: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.is_property = is_property
        self.type_name = type_name

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
        token = self._next()
        if token.kind != "literal":
            raise _syntax_error(self.text, token.position, "Literal expected")
        return token.value

    def _comparison(self) -> Filter:
        if function := self._accept_word(*_FUNCTIONS):
            self._expect("(")
            name = self._property()
            self._expect(",")
            needle = self._literal()
            self._expect(")")
            return _function(function, name, needle)
        name = self._property()
        token = self._next()
        if token.kind != "name" or token.value not in _COMPARISONS:
            raise _syntax_error(self.text, token.position, "Comparison operator expected")
        return _compare(token.value, name, self._literal())


def _compare(operator: str, name: str, literal: Any) -> Filter:
    expected = fold(literal)
    if operator == "eq":
        lookups = frozenset({(name, expected)}) if literal is not None else None
        return Filter(lambda r: fold(r.get(name)) == expected, lookups)
    if operator == "ne":
        return Filter(lambda r: fold(r.get(name)) != expected, None)
    if literal is None:
        return Filter(lambda r: False, None)
    test = {
        "gt": lambda a: a > expected,
        "ge": lambda a: a >= expected,
        "lt": lambda a: a < expected,
        "le": lambda a: a <= expected,
    }[operator]

    def matches(record: dict) -> bool:
        actual = fold(record.get(name))
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


def parse_filter(text: str, is_property: Callable[[str], bool], type_name: str) -> Filter:
    """Parse `text`. Raises ODataError 400: "Could not find a property named ..." for an unknown
    property, "There is an unterminated literal ..." or a syntax error otherwise."""
    return _Parser(text, is_property, type_name).parse()

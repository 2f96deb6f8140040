from __future__ import annotations

import pytest

from local.emulators.dataverse.errors import ODataError
from local.emulators.dataverse.odata_filter import parse_filter

RECORDS = [
    {"id": 1, "lastname": "O'Bryan", "email": "A@Example.com", "score": 5, "vip": True, "city": None},
    {"id": 2, "lastname": "Smith", "email": "b@example.com", "score": 10, "vip": False, "city": "Oslo"},
    {"id": 3, "lastname": "smith", "email": None, "score": 7, "vip": False, "city": "Rome"},
]
KNOWN = {"id", "lastname", "email", "score", "vip", "city"}


ALIASES = {"@name": "'Smith'", "@low": "7"}


def ids(text: str) -> list[int]:
    where = parse_filter(text, KNOWN.__contains__, "T", aliases=ALIASES)
    return [r["id"] for r in RECORDS if where.matches(r)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lastname eq 'O''Bryan'", [1]),
        ("lastname eq 'SMITH'", [2, 3]),
        ("email eq 'a@example.com' or email eq 'B@EXAMPLE.COM'", [1, 2]),
        ("lastname eq 'smith' and score eq 7", [3]),
        ("lastname ne 'smith'", [1]),
        ("email eq null", [3]),
        ("city ne null", [2, 3]),
        ("vip eq true", [1]),
        ("not (vip eq true) and (score gt 8 or city eq 'rome')", [2, 3]),
        ("score ge 7 and score le 9", [3]),
        ("contains(email,'EXAMPLE') and startswith(lastname,'o''b')", [1]),
        ("endswith(city,'lo')", [2]),
        ("((lastname eq 'x')) or id eq 2", [2]),
        ("Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=[\"smith\",\"o'bryan\"])", [1, 2, 3]),
        ("Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=['O''Bryan']) or id eq 3", [1, 3]),
        ("Microsoft.Dynamics.CRM.NotIn(PropertyName='city',PropertyValues=['Oslo'])", [3]),
        ("not Microsoft.Dynamics.CRM.In(PropertyName='city',PropertyValues=['Oslo'])", [1, 3]),
        ("lastname eq @name and score le @low", [3]),
        ("email eq @missing", [3]),
    ],
)
def test_filter_selects(text: str, expected: list[int]) -> None:
    assert ids(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lastname eq 'O'Bryan'", "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."),
        ("lastname eq 'O''Bryan", "There is an unterminated literal at position 21 in 'lastname eq 'O''Bryan'."),
        ("lastname eq 'a' 'b'", "Syntax error at position 16"),
        ("Lastname eq 'x'", "Could not find a property named 'Lastname' on type 'T'."),
        ("lastname eq", "Expression expected"),
        ("lastname xx 'a'", "Comparison operator expected"),
        ("(lastname eq 'a'", "')' expected"),
        ("lastname eq 'a' $", "is not valid"),
        ("lastname eq \"a\"", "Literal expected"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=['a'", "']' expected"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='lastname')", "needs PropertyName and PropertyValues"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='lastname',Values=['a'])", "Parameter 'Values' is not valid"),
    ],
)
def test_filter_errors(text: str, message: str) -> None:
    with pytest.raises(ODataError) as raised:
        parse_filter(text, KNOWN.__contains__, "T")

    assert raised.value.status == 400
    assert raised.value.code == "0x0"
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("text", "lookups"),
    [
        ("email eq 'A@x' or lastname eq 'b'", {("email", "a@x"), ("lastname", "b")}),
        ("email eq 'a' and score gt 1", {("email", "a")}),
        ("email eq 'a' or score gt 1", None),
        ("email eq null", None),
        ("not (email eq 'a')", None),
        ("Microsoft.Dynamics.CRM.In(PropertyName='email',PropertyValues=['A','b'])", {("email", "a"), ("email", "b")}),
        ("Microsoft.Dynamics.CRM.NotIn(PropertyName='email',PropertyValues=['a'])", None),
    ],
)
def test_equality_lookups_cover_every_match(text: str, lookups: set | None) -> None:
    where = parse_filter(text, KNOWN.__contains__, "T")

    assert (set(where.lookups) if where.lookups is not None else None) == lookups

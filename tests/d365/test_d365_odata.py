from __future__ import annotations

from urllib.parse import parse_qs, unquote

import pytest

from d365.odata import filter_eq_any, key_segment, query_string, string_literal

HOSTILE = ["o'brien@x.com", "' or 1 eq 1", "%27", "a&b=c", "x/y", "#frag", "why?", "a+b", "a b", "')", "''"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("plain", "'plain'"), ("o'brien", "'o''brien'"), ("''", "''''''"), ("", "''")],
)
def test_string_literal_doubles_quotes(value: str, expected: str) -> None:
    assert string_literal(value) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ({"hnt_domain": "x/y"}, "(hnt_domain='x%2Fy')"),
        ({"hnt_domain": "o'brien.com"}, "(hnt_domain='o''brien.com')"),
        ({"hnt_companyid": 86}, "(hnt_companyid=86)"),
        ({"hnt_domain": "a.com", "hnt_companyid": 2}, "(hnt_domain='a.com',hnt_companyid=2)"),
    ],
)
def test_key_segment(key: dict, expected: str) -> None:
    assert key_segment(key) == expected


@pytest.mark.parametrize("value", HOSTILE)
def test_key_segment_value_round_trips_and_stays_one_literal(value: str) -> None:
    segment = key_segment({"hnt_domain": value})
    # no URL syntax survives encoding, and decoding gives back exactly one OData literal
    assert not any(c in segment for c in "/?#&+ ")
    decoded = unquote(segment)
    assert decoded == "(hnt_domain=" + string_literal(value) + ")"


@pytest.mark.parametrize(
    "key", [{}, {"bad name": "x"}, {"x": True}, {"x": 1.5}, {"x": None}, {"a;b": 1}]
)
def test_key_segment_rejects(key: dict) -> None:
    with pytest.raises(ValueError):
        key_segment(key)


def test_filter_eq_any_joins_with_or() -> None:
    assert (
        filter_eq_any([("emailaddress1", "a"), ("websiteurl", "b")])
        == "emailaddress1 eq 'a' or websiteurl eq 'b'"
    )


@pytest.mark.parametrize("pairs", [[], [("1col", "x")], [("a b", "x")]])
def test_filter_eq_any_rejects(pairs: list) -> None:
    with pytest.raises(ValueError):
        filter_eq_any(pairs)


@pytest.mark.parametrize("value", HOSTILE)
def test_query_string_carries_filter_values_unchanged(value: str) -> None:
    odata_filter = filter_eq_any([("emailaddress1", value)])
    query = query_string({"$select": "leadid,emailaddress1", "$filter": odata_filter, "$top": "5"})
    # a server splitting on & and decoding sees exactly our three parameters and the literal intact
    parsed = parse_qs(query, keep_blank_values=True)
    assert parsed == {"$select": ["leadid,emailaddress1"], "$filter": [odata_filter], "$top": ["5"]}
    assert not any(c in query.split("$filter=")[1].split("&")[0] for c in "/?#+ ")

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.intake import LEAD_FIELDS, MAX_BODY_BYTES, MAX_DEPTH, MAX_LEADS, IntakeError, Problem, parse_leads

JSON = "application/json"
# The server's clock at receipt: a few days after HUNTER_LEAD's updated_at.
NOW = datetime(2026, 11, 29, 5, 30, tzinfo=timezone.utc)

HUNTER_LEAD: dict[str, Any] = {
    "company_id": 86,
    "domain": "uppoint.com.tr",
    "canonical_name": "uppoint",
    "readiness_score": 90,
    "m365_fit_score": 90,
    "priority_score": 3,
    "segment": "Existing",
    "provider": "M365",
    "tenant_size": "medium",
    "contact_emails": ["it@uppoint.com.tr"],
    "infrastructure_summary": "Country: IE; ...",
    "source": "Manual",
    "processing_status": "Idle",
    "referral_id": None,
    "referral_type": None,
    "priority_category": "High",
    "priority_label": "P1",
    "technical_heat": "Hot",
    "commercial_segment": "Mid-Market",
    "commercial_heat": "Warm",
    "updated_at": "2026-11-26T10:00:00Z",
}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def refusal(raw: bytes, content_type: str | None = JSON) -> IntakeError:
    with pytest.raises(IntakeError) as caught:
        parse_leads(raw, content_type, now=NOW)
    return caught.value


def lead_with(**changes: Any) -> dict[str, Any]:
    return {**HUNTER_LEAD, **changes}


def test_hunter_lead_is_normalised() -> None:
    # given Hunter's lead with odd casing, padding, an offset timestamp and an unknown field
    sent = lead_with(
        domain="  Uppoint.COM.tr. ",
        canonical_name="  uppoint ",
        contact_emails=["it@UPPOINT.com.tr", "IT@uppoint.com.tr", "it@uppoint.com.tr"],
        updated_at="2026-11-26T13:00:00+03:00",
        referral_id=12345,
        hunter_internal={"x": 1},
    )

    # when
    [lead] = parse_leads(body(sent), "application/json; charset=UTF-8", now=NOW)

    # then
    assert lead == {
        **HUNTER_LEAD,
        "domain": "uppoint.com.tr",
        "canonical_name": "uppoint",
        "contact_emails": ["it@uppoint.com.tr", "IT@uppoint.com.tr"],
        "updated_at": "2026-11-26T10:00:00+00:00",
        "referral_id": "12345",
    }
    assert list(lead) == list(LEAD_FIELDS)


def test_minimal_lead_keeps_only_what_was_sent() -> None:
    assert parse_leads(body({"company_id": 1, "domain": "a.io", "segment": "  "}), JSON, now=NOW) == [
        {"company_id": 1, "domain": "a.io", "segment": None}
    ]


def test_batch_returns_every_lead_in_order() -> None:
    leads = [lead_with(company_id=n, domain=f"c{n}.example.com") for n in range(1, MAX_LEADS + 1)]

    parsed = parse_leads(body({"leads": leads}), JSON, now=NOW)

    assert [lead["company_id"] for lead in parsed] == list(range(1, MAX_LEADS + 1))


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("company_id", True, "must be an integer, got boolean"),
        ("company_id", 86.0, "must be an integer, got number"),
        ("company_id", "86", "must be an integer, got string"),
        ("company_id", 0, "must be between 1 and 9007199254740991"),
        ("company_id", -5, "must be between 1 and 9007199254740991"),
        ("company_id", 2**53, "must be between 1 and 9007199254740991"),
        ("company_id", None, "must not be null or blank"),
        ("readiness_score", 101, "must be between 0 and 100"),
        ("m365_fit_score", -1, "must be between 0 and 100"),
        ("priority_score", 1001, "must be between 0 and 1000"),
        ("priority_score", 3.5, "must be an integer, got number"),
        ("segment", 7, "must be a string, got number"),
        ("segment", "x" * 1001, "must be at most 1000 characters"),
        ("canonical_name", "nul\x00byte", "must not contain control characters or unpaired surrogates"),
        ("canonical_name", "half \ud800 pair", "must not contain control characters or unpaired surrogates"),
        ("infrastructure_summary", "x" * 32001, "must be at most 32000 characters"),
        ("contact_emails", "it@uppoint.com.tr", "must be an array of e-mail addresses, got string"),
        ("contact_emails", [f"u{n}@a.io" for n in range(51)], "must hold at most 50 addresses"),
        ("referral_id", 1.5, "must be a string or an integer, got number"),
        ("referral_id", "r" * 101, "must be at most 100 characters"),
        ("updated_at", "2026-11-26T10:00:00", "must include a UTC offset, e.g. Z or +03:00"),
        ("updated_at", "yesterday", "must be an ISO-8601 timestamp, e.g. 2026-11-26T10:00:00Z"),
        ("updated_at", 1764151200, "must be an ISO-8601 timestamp string, got number"),
        ("updated_at", "0001-01-01T00:00:00+01:00", "is out of range"),
    ],
)
def test_bad_field_is_named_with_its_reason(field: str, value: Any, reason: str) -> None:
    error = refusal(body(lead_with(**{field: value})))

    assert error.status == 400
    assert error.problems == (Problem(field, reason),)


FUTURE = "must not be more than 24 hours ahead of the server's clock"


@pytest.mark.parametrize(
    "updated_at",
    [
        (NOW + timedelta(minutes=5)).isoformat(),  # a clock a few minutes fast
        (NOW + timedelta(days=1)).isoformat(),  # the limit itself
        (NOW + timedelta(days=1)).astimezone(timezone(timedelta(hours=-5))).isoformat(),  # in another offset
        "2020-01-01T00:00:00Z",
    ],
    ids=["5 minutes ahead", "24 hours ahead", "24 hours ahead, -05:00", "long ago"],
)
def test_updated_at_up_to_a_day_ahead_is_accepted(updated_at: str) -> None:
    [lead] = parse_leads(body(lead_with(updated_at=updated_at)), JSON, now=NOW)

    assert datetime.fromisoformat(lead["updated_at"]) == datetime.fromisoformat(updated_at)


@pytest.mark.parametrize(
    "updated_at",
    [
        (NOW + timedelta(days=1, seconds=1)).isoformat(),
        (NOW + timedelta(days=1, seconds=1)).astimezone(timezone(timedelta(hours=14))).isoformat(),
        "9999-12-31T23:59:59Z",
    ],
    ids=["a day and a second ahead", "same, at +14:00", "year 9999"],
)
def test_updated_at_more_than_a_day_ahead_is_refused(updated_at: str) -> None:
    error = refusal(body(lead_with(updated_at=updated_at)))

    assert (error.status, error.problems) == (400, (Problem("updated_at", FUTURE),))


def test_future_updated_at_in_a_batch_names_the_lead_and_refuses_the_batch() -> None:
    # given a batch whose second lead claims a version from next week
    leads = [lead_with(company_id=1), lead_with(company_id=2, updated_at=(NOW + timedelta(days=7)).isoformat())]

    # when
    error = refusal(body({"leads": leads}))

    # then
    assert (error.status, error.problems) == (400, (Problem("leads[1].updated_at", FUTURE),))


def test_the_future_is_measured_from_the_clock_passed_in() -> None:
    ahead = (NOW + timedelta(days=2)).isoformat()

    [lead] = parse_leads(body(lead_with(updated_at=ahead)), JSON, now=NOW + timedelta(days=1, hours=1))

    assert lead["updated_at"] == ahead


@pytest.mark.parametrize("field", ["company_id", "domain"])
def test_required_field_missing(field: str) -> None:
    sent = dict(HUNTER_LEAD)
    del sent[field]

    assert refusal(body(sent)).problems == (Problem(field, "is required"),)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.DE", "xn--bcher-kva.de"),
        ("türkiye.com.tr", "xn--trkiye-3ya.com.tr"),
        ("münchen。de", "xn--mnchen-3ya.de"),  # an ideographic full stop is a dot to IDNA
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("a-b.c-d.io", "a-b.c-d.io"),
        ("example.com.", "example.com"),
        ("1password.com", "1password.com"),
    ],
)
def test_domain_is_normalised_to_ascii(domain: str, expected: str) -> None:
    [lead] = parse_leads(body({"company_id": 1, "domain": domain}), JSON, now=NOW)

    assert lead["domain"] == expected


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("https://uppoint.com.tr", "must be a bare host name, not a URL"),
        ("uppoint.com.tr/about", "must not contain a path, query or fragment"),
        ("uppoint.com.tr?x=1", "must not contain a path, query or fragment"),
        ("uppoint.com.tr:8443", "must not contain a port: 'uppoint.com.tr:8443'"),
        ("admin:pw@uppoint.com.tr", "must not contain credentials or '@'"),
        ("upp oint.com.tr", "must not contain spaces"),
        ("", "must not be blank"),
        ("localhost", "must have at least two labels, e.g. example.com: 'localhost'"),
        ("under_score.com", "labels must be 1-63 letters, digits or inner hyphens: 'under_score.com'"),
        ("-lead.com", "labels must be 1-63 letters, digits or inner hyphens: '-lead.com'"),
        ("a..com", "is not a valid (internationalised) host name: 'a..com'"),
        ("x" * 64 + ".com", "is not a valid (internationalised) host name: '" + "x" * 39 + "..."),
        ("10.0.0.1", "must be a host name, not an IP address"),
        ("a." * 127 + "io", "must be at most 253 characters"),
        (12, "must be a string, got number"),
    ],
)
def test_bad_domain_is_refused(domain: Any, reason: str) -> None:
    assert refusal(body({"company_id": 1, "domain": domain})).problems == (Problem("domain", reason),)


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("o'brien@Example.COM", "o'brien@example.com"),
        ("First.Last+tag@mail.bücher.de", "First.Last+tag@mail.xn--bcher-kva.de"),
        ("  it@uppoint.com.tr ", "it@uppoint.com.tr"),
    ],
)
def test_good_email_is_normalised(email: str, expected: str) -> None:
    [lead] = parse_leads(body({"company_id": 1, "domain": "a.io", "contact_emails": [email]}), JSON, now=NOW)

    assert lead["contact_emails"] == [expected]


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("it.uppoint.com.tr", "must be an e-mail address with exactly one '@'"),
        ("a@b@uppoint.com.tr", "must be an e-mail address with exactly one '@'"),
        ("@uppoint.com.tr", "must have a local part of 1-64 ASCII letters"),
        (".it@uppoint.com.tr", "must have a local part of 1-64 ASCII letters"),
        ("i..t@uppoint.com.tr", "must have a local part of 1-64 ASCII letters"),
        ('"it"@uppoint.com.tr', "must have a local part of 1-64 ASCII letters"),
        ("x" * 65 + "@uppoint.com.tr", "must have a local part of 1-64 ASCII letters"),
        ("it@", "domain part must not be blank"),
        ("it@localhost", "domain part must have at least two labels"),
        ("it@uppoint.com.tr:25", "domain part must not contain a port"),
        (None, "must be an e-mail address string, got null"),
    ],
)
def test_bad_email_is_named_by_index(email: Any, reason: str) -> None:
    sent = {"company_id": 1, "domain": "a.io", "contact_emails": ["ok@a.io", email]}

    [problem] = refusal(body(sent)).problems

    assert problem.field == "contact_emails[1]"
    assert problem.reason.startswith(reason)


def test_batch_problems_name_each_lead_and_nothing_is_returned() -> None:
    leads = [HUNTER_LEAD, lead_with(domain="http://x.com"), "not a lead", lead_with(company_id=None, segment=[])]

    error = refusal(body({"leads": leads}))

    assert error.status == 400
    assert error.problems == (
        Problem("leads[1].domain", "must be a bare host name, not a URL"),
        Problem("leads[2]", "must be a lead object, got string"),
        Problem("leads[3].company_id", "must not be null or blank"),
        Problem("leads[3].segment", "must be a string, got array"),
    )


def test_many_problems_are_capped() -> None:
    leads = [{"company_id": 0, "domain": "x"} for _ in range(100)]

    problems = refusal(body({"leads": leads})).problems

    assert len(problems) == 51
    assert problems[-1] == Problem("body", "150 more problems not shown")


@pytest.mark.parametrize(
    ("leads", "reason"),
    [
        ([HUNTER_LEAD] * (MAX_LEADS + 1), "must hold 1 to 500 leads, got 501"),
        ([], "must hold 1 to 500 leads, got 0"),
        ({"0": HUNTER_LEAD}, "must be an array of leads, got object"),
        (None, "must be an array of leads, got null"),
    ],
)
def test_bad_batch_is_refused(leads: Any, reason: str) -> None:
    error = refusal(body({"leads": leads}))

    assert (error.status, error.problems) == (400, (Problem("leads", reason),))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b'{"company_id": 1, "domain": "caf\xe9.com"}', "is not valid UTF-8 (at byte 32)"),
        (b'{"company_id": 1,\n "domain": }', "is not valid JSON: Expecting value (line 2, column 12)"),
        (b'{"company_id": 1} trailing', "is not valid JSON: Extra data (line 1, column 19)"),
        (b'{"domain": "a.io', "is not valid JSON: Unterminated string starting at (line 1, column 12)"),
        (b'{"company_id": NaN}', "is not valid JSON: NaN is not a number"),
        (b'{"company_id": -Infinity}', "is not valid JSON: -Infinity is not a number"),
        (b'{"company_id": 1' + b"0" * 5000 + b"}", "holds an integer longer than 20 digits"),
        (b'{"company_id": 1, "company_id": 2, "domain": "a.io"}', "has a duplicate key 'company_id'"),
        (b'[{"company_id": 1, "domain": "a.io"}]', "must be a JSON object, got array"),
        (b'"lead"', "must be a JSON object, got string"),
        (b"[" * 100_000, f"must not nest deeper than {MAX_DEPTH} levels"),
        (b'{"x":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), f"must not nest deeper than {MAX_DEPTH} levels"),
    ],
)
def test_bad_body_is_refused(raw: bytes, reason: str) -> None:
    error = refusal(raw)

    assert (error.status, error.problems) == (400, (Problem("body", reason),))


def test_nesting_up_to_the_limit_is_fine_and_brackets_in_strings_do_not_count() -> None:
    deep = {"company_id": 1, "domain": "a.io", "segment": "[[[[" * 100}
    value: Any = 1
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    deep["ignored"] = value

    [lead] = parse_leads(body(deep), JSON, now=NOW)

    assert lead["segment"] == "[[[[" * 100


def test_body_over_one_mebibyte_is_413() -> None:
    raw = body(lead_with(infrastructure_summary="x" * 100, padding=" " * MAX_BODY_BYTES))

    error = refusal(raw)

    assert (error.status, error.problems) == (413, (Problem("body", "must be at most 1048576 bytes"),))


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        (None, "must be application/json"),
        ("", "must be application/json"),
        ("text/plain", "must be application/json"),
        ("application/x-www-form-urlencoded", "must be application/json"),
        ("application/json; charset=latin-1", "charset must be utf-8"),
    ],
)
def test_wrong_content_type_is_415(content_type: str | None, reason: str) -> None:
    error = refusal(body(HUNTER_LEAD), content_type)

    assert (error.status, error.problems) == (415, (Problem("Content-Type", reason),))


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON", 'application/json; charset="utf-8"'])
def test_json_content_types_are_accepted(content_type: str) -> None:
    assert parse_leads(body(HUNTER_LEAD), content_type, now=NOW)[0]["company_id"] == 86


def test_response_body_is_the_documented_problem_body() -> None:
    error = refusal(body(lead_with(domain="a:1")))

    assert error.response_body() == {
        "error": "Bad Request",
        "problems": [{"field": "domain", "reason": "must not contain a port: 'a:1'"}],
    }

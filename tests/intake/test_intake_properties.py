"""Whatever arrives, parse_leads returns valid normalised leads or raises IntakeError: nothing else."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.intake import LEAD_FIELDS, MAX_FUTURE_SKEW, IntakeError, parse_leads

MAX_FIELD_CHARS = 64
MAX_REASON_CHARS = 200
REQUIRED = {name for name, field in LEAD_FIELDS.items() if field.required}
NOW = datetime(2026, 11, 29, 5, 30, tzinfo=timezone.utc)
FAST = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.sampled_from([*LEAD_FIELDS, "leads", ""]) | st.text(max_size=4)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=6,
)
offsets = st.integers(-24 * 60 + 1, 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))
field_values = {
    "company_id": st.integers(min_value=-5, max_value=2**53 + 5) | json_scalars,
    "domain": st.sampled_from(["uppoint.com.tr", "BÜCHER.de.", "http://a.io", "a:1", "x", ""])
    | st.from_regex(r"[a-zA-Z0-9\-.\u00e0-\u00ff_:/@ ]{0,30}", fullmatch=True)
    | json_scalars,
    "contact_emails": st.lists(
        st.from_regex(r"[a-zA-Z0-9.'+\"@-]{0,12}@[a-z0-9.\-\u00fc]{0,12}", fullmatch=True) | json_scalars,
        max_size=3,
    )
    | json_values,
    "updated_at": st.datetimes(timezones=offsets).map(lambda moment: moment.isoformat()) | json_scalars,
}
GOOD_LEAD = {"company_id": 86, "domain": "uppoint.com.tr", "contact_emails": ["it@uppoint.com.tr"]}
# A good lead with a few fields replaced, removed or added: near the edge, where the bugs are.
overrides = st.lists(
    st.one_of(
        [st.tuples(st.just(name), field_values.get(name, json_scalars)) for name in LEAD_FIELDS]
        + [st.tuples(keys, json_values)]
    ),
    max_size=3,
)
removals = st.sets(st.sampled_from(list(LEAD_FIELDS)), max_size=2)
leads = st.builds(
    lambda changes, removed: {k: v for k, v in {**GOOD_LEAD, **dict(changes)}.items() if k not in removed},
    overrides,
    removals,
)
documents = leads | st.fixed_dictionaries({"leads": st.lists(leads, max_size=3) | json_values}) | json_values

def check(body: bytes, content_type: str | None = "application/json") -> None:
    try:
        parsed = parse_leads(body, content_type, now=NOW)
    except IntakeError as error:
        assert 400 <= error.status < 500
        assert error.problems
        for problem in error.problems:
            assert 0 < len(problem.field) <= MAX_FIELD_CHARS
            assert 0 < len(problem.reason) <= MAX_REASON_CHARS
            assert "Traceback" not in problem.reason and 'File "' not in problem.reason
        json.dumps(error.response_body())
        event(f"refused {error.status}")
        return
    event("accepted")
    assert parsed
    for lead in parsed:
        assert REQUIRED <= set(lead) <= set(LEAD_FIELDS)
        if lead.get("updated_at") is not None:
            assert datetime.fromisoformat(lead["updated_at"]) <= NOW + MAX_FUTURE_SKEW
        encoded = json.dumps(lead, ensure_ascii=False).encode("utf-8")  # no lone surrogates survive
        # normalising is idempotent: a normalised lead passes through unchanged
        assert parse_leads(encoded, "application/json", now=NOW) == [lead]


@FAST
@given(documents)
def test_any_json_document(document: Any) -> None:
    check(json.dumps(document).encode())


@FAST
@given(st.binary(max_size=300))
def test_any_bytes(body: bytes) -> None:
    check(body)


@FAST
@given(st.text(alphabet='{}[]":,0123456789-.eE tfnrulasx\\', max_size=80))
def test_json_ish_text(text: str) -> None:
    check(text.encode())


@settings(max_examples=300, deadline=None)
@given(st.none() | st.text(max_size=40), st.binary(max_size=40))
def test_any_content_type(content_type: str | None, body: bytes) -> None:
    check(body, content_type)

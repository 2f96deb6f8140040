from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from d365.mapping import (
    FIELD_RULES,
    ChoiceOverridesError,
    MappingWarning,
    load_choice_overrides,
    map_lead,
    payload_fingerprint,
)
from d365.mapping_doc import render
from d365.metadata import parse_lead_schema
from d365_metadata_json import FULL_COLUMNS, MVP_COLUMNS, bodies, choice

REPO = Path(__file__).resolve().parents[2]

LEAD_86: dict[str, Any] = {
    "company_id": 86, "domain": "uppoint.com.tr", "canonical_name": "uppoint", "readiness_score": 90,
    "m365_fit_score": 90, "priority_score": 3, "segment": "Existing", "provider": "M365", "tenant_size": "medium",
    "contact_emails": ["it@uppoint.com.tr"], "infrastructure_summary": "Country: IE; ...", "source": "Manual",
    "processing_status": "Idle", "referral_id": None, "referral_type": None, "priority_category": "High",
    "priority_label": "P1", "technical_heat": "Hot", "commercial_segment": "Mid-Market", "commercial_heat": "Warm",
    "updated_at": "2026-11-26T10:00:00Z",
}
CHOICE = 100000000
MVP = parse_lead_schema(*bodies(MVP_COLUMNS))
FULL = parse_lead_schema(*bodies(FULL_COLUMNS))
POST_MVP = ("hnt_prioritycategory", "hnt_prioritylabel", "hnt_technicalheat", "hnt_commercialsegment",
            "hnt_commercialheat", "hnt_ispartnercenterreferral")


def test_company_86_against_full_schema() -> None:
    mapped = map_lead(LEAD_86, FULL)

    assert mapped.payload == {
        "subject": "Hunter: uppoint.com.tr",
        "companyname": "uppoint",
        "websiteurl": "https://uppoint.com.tr",
        "emailaddress1": "it@uppoint.com.tr",
        "hnt_companyid": 86,
        "hnt_domain": "uppoint.com.tr",
        "hnt_finalscore": 90,
        "hnt_m365fitscore": 90,
        "hnt_priorityscore": 3,
        "hnt_provider": "M365",
        "hnt_infrasummary": "Country: IE; ...",
        "hnt_segment": CHOICE + 0,  # Existing
        "hnt_huntertenantsize": CHOICE + 1,  # "medium" matches "Medium"
        "hnt_source": CHOICE + 0,  # Manual
        "hnt_processingstatus": CHOICE + 0,  # Idle
        "hnt_prioritycategory": CHOICE + 0,  # High
        "hnt_prioritylabel": "P1",
        "hnt_technicalheat": CHOICE + 0,  # Hot
        "hnt_commercialsegment": "Mid-Market",
        "hnt_commercialheat": CHOICE + 1,  # Warm
        "hnt_ispartnercenterreferral": False,
    }
    assert mapped.warnings == ()
    assert mapped.missing_columns == ()


def test_mvp_org_lacks_post_mvp_columns_without_warnings() -> None:
    mapped = map_lead(LEAD_86, MVP)

    assert mapped.missing_columns == POST_MVP
    assert not set(POST_MVP) & set(mapped.payload)
    assert mapped.warnings == ()


@pytest.mark.parametrize(
    ("change", "column", "expected"),
    [
        ({"referral_id": 4711, "referral_type": "Partner Center"}, "hnt_referralid", "4711"),
        ({"referral_id": 4711, "referral_type": "partner center"}, "hnt_referraltype", CHOICE + 0),
        ({"referral_id": 4711}, "hnt_ispartnercenterreferral", True),
        ({"referral_id": ""}, "hnt_ispartnercenterreferral", False),
        ({"contact_emails": ["first@x.com", "second@x.com"]}, "emailaddress1", "first@x.com"),
        ({"readiness_score": 90.0}, "hnt_finalscore", 90),
        ({"readiness_score": "77"}, "hnt_finalscore", 77),
        ({"tenant_size": "ENTERPRISE"}, "hnt_huntertenantsize", CHOICE + 3),
    ],
)
def test_derived_values(change: dict, column: str, expected: Any) -> None:
    assert map_lead({**LEAD_86, **change}, FULL).payload[column] == expected


@pytest.mark.parametrize(
    ("change", "absent"),
    [
        ({"contact_emails": []}, "emailaddress1"),
        ({"contact_emails": None}, "emailaddress1"),
        ({"provider": None}, "hnt_provider"),
        ({"segment": None}, "hnt_segment"),
        ({"referral_id": None}, "hnt_referralid"),
        ({"domain": None}, "subject"),
        ({"domain": None}, "websiteurl"),
    ],
)
def test_none_values_are_not_sent(change: dict, absent: str) -> None:
    mapped = map_lead({**LEAD_86, **change}, FULL)
    assert absent not in mapped.payload
    assert mapped.warnings == ()


def test_absent_fields_are_not_sent() -> None:
    mapped = map_lead({"domain": "a.com"}, FULL)
    assert mapped.payload == {
        "subject": "Hunter: a.com", "websiteurl": "https://a.com", "hnt_domain": "a.com",
        "hnt_ispartnercenterreferral": False,
    }


@pytest.mark.parametrize(
    ("change", "column", "sent", "reason_part"),
    [
        ({"canonical_name": "x" * 150}, "companyname", "x" * 100, "cut from 150 to 100"),
        ({"priority_label": "P1-urgent-now"}, "hnt_prioritylabel", "P1-urgent-",
         "cut from 13 to 10"),
        ({"segment": "Enterprise Giant"}, "hnt_segment", None, "no option for 'Enterprise Giant'"),
        ({"readiness_score": 90.5}, "hnt_finalscore", None, "not a whole number"),
        ({"readiness_score": "ninety"}, "hnt_finalscore", None, "not a whole number"),
        ({"readiness_score": True}, "hnt_finalscore", None, "not a whole number"),
    ],
)
def test_values_that_do_not_fit_warn(change: dict, column: str, sent: Any, reason_part: str) -> None:
    mapped = map_lead({**LEAD_86, **change}, FULL)

    assert mapped.payload.get(column) == sent
    assert [w.column for w in mapped.warnings] == [column]
    assert reason_part in mapped.warnings[0].reason


def test_column_type_comes_from_the_org_not_the_table() -> None:
    # an org that made hnt_commercialsegment a choice and hnt_provider a memo
    schema = parse_lead_schema(*bodies({
        **FULL_COLUMNS,
        "hnt_commercialsegment": choice("SMB", "Mid-Market", "Enterprise"),
        "hnt_provider": ("Memo", 2),
        "hnt_companyid": ("DateTime",),
    }))
    mapped = map_lead(LEAD_86, schema)

    assert mapped.payload["hnt_commercialsegment"] == CHOICE + 1
    assert mapped.payload["hnt_provider"] == "M3"
    assert "hnt_companyid" not in mapped.payload
    assert MappingWarning("hnt_companyid", "column type DateTime is not supported") in mapped.warnings


@pytest.mark.parametrize(
    ("overrides", "expected", "warned"),
    [
        ({"hnt_huntertenantsize": {"medium": "Large"}}, CHOICE + 2, False),  # to another label
        ({"hnt_huntertenantsize": {"MEDIUM": CHOICE + 3}}, CHOICE + 3, False),  # to a value, any case
        ({"hnt_huntertenantsize": {"small": "Medium"}}, CHOICE + 1, False),  # other labels untouched
        ({"hnt_huntertenantsize": {"medium": 42}}, None, True),  # a value the org does not have
        ({"hnt_huntertenantsize": {"medium": "Gigantic"}}, None, True),
    ],
)
def test_choice_overrides_come_first(overrides: dict, expected: int | None, warned: bool) -> None:
    mapped = map_lead(LEAD_86, FULL, choice_overrides=overrides)
    assert mapped.payload.get("hnt_huntertenantsize") == expected
    assert bool(mapped.warnings) is warned


def test_no_rule_hard_codes_a_choice_integer() -> None:
    # with no options at all, every choice column is left out with a warning
    empty = {name: ("Picklist", []) if spec[0] == "Picklist" else spec for name, spec in FULL_COLUMNS.items()}
    mapped = map_lead(LEAD_86, parse_lead_schema(*bodies(empty)))
    choices = {name for name, spec in FULL_COLUMNS.items() if spec[0] == "Picklist"} - {"hnt_referraltype"}
    assert not choices & set(mapped.payload)
    assert {w.column for w in mapped.warnings} == choices


def test_load_choice_overrides(tmp_path: Path) -> None:
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps({"hnt_segment": {"Existing": "Customer", "New": 100000001}}))
    assert {k: dict(v) for k, v in load_choice_overrides(path).items()} == {
        "hnt_segment": {"existing": "Customer", "new": 100000001}
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        ("[]", "expected a JSON object"),
        ('{"hnt_domain": {"a": "b"}}', "'hnt_domain' is not a mapped choice column"),
        ('{"hnt_segment": ["Existing"]}', "hnt_segment: expected an object"),
        ('{"hnt_segment": {"Existing": true}}', "hnt_segment.Existing"),
        ('{"hnt_segment": {"Existing": ""}}', "hnt_segment.Existing"),
        ('{"hnt_segment": {"Existing": 1.5}}', "hnt_segment.Existing"),
    ],
)
def test_load_choice_overrides_rejects(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "overrides.json"
    path.write_text(content)
    with pytest.raises(ChoiceOverridesError, match="overrides.json") as raised:
        load_choice_overrides(path)
    assert message in str(raised.value)


def test_load_choice_overrides_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ChoiceOverridesError, match="cannot read"):
        load_choice_overrides(tmp_path / "nope.json")


def test_payload_fingerprint_is_canonical() -> None:
    a = map_lead(LEAD_86, FULL).payload
    b = dict(reversed(list(a.items())))
    assert payload_fingerprint(a) == payload_fingerprint(b)
    assert payload_fingerprint(a) != payload_fingerprint({**a, "hnt_priorityscore": 4})
    assert len(payload_fingerprint({})) == 64


def test_table_has_one_rule_per_column_and_choices_list_known_values() -> None:
    columns = [rule.column for rule in FIELD_RULES]
    assert len(columns) == len(set(columns)) == 23
    for rule in FIELD_RULES:
        assert bool(rule.known_values) == (rule.expected_type == "Choice"), rule.column


def test_committed_mapping_doc_matches_the_table() -> None:
    committed = (REPO / "docs" / "mapping.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m d365.mapping_doc > docs/mapping.md"


def test_mapping_doc_module_prints_the_doc() -> None:
    out = subprocess.run([sys.executable, "-m", "d365.mapping_doc"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out == render()

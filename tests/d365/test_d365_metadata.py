from __future__ import annotations

import pytest

from d365.metadata import parse_lead_schema
from d365_metadata_json import MVP_COLUMNS, bodies, option


def test_parse_reads_types_lengths_and_options() -> None:
    schema = parse_lead_schema(*bodies(MVP_COLUMNS))

    assert schema.has("hnt_segment") and not schema.has("hnt_prioritycategory")
    assert schema.get("subject").attribute_type == "String" and schema.get("subject").max_length == 300
    assert schema.get("hnt_infrasummary").max_length == 4000
    assert schema.get("hnt_companyid").max_length is None
    size = schema.get("hnt_huntertenantsize")
    assert size.labels == ("Small", "Medium", "Large", "Enterprise")
    assert size.option_value("medium") == 100000001
    assert size.option_value(" LARGE ") == 100000002
    assert size.option_value("huge") is None


def test_label_falls_back_to_first_localized_label_and_skips_unlabelled() -> None:
    unlabelled = {"Value": 3, "Label": {"LocalizedLabels": [], "UserLocalizedLabel": None}}
    picklist = ("Picklist", [option(1, "Hot", user_label=False), unlabelled])
    schema = parse_lead_schema(*bodies({"hnt_technicalheat": picklist}))
    assert dict(schema.get("hnt_technicalheat").options) == {"hot": 1}


def test_global_option_set_used_when_no_local_one() -> None:
    attributes, picklists, strings, memos = bodies({"hnt_source": ("Picklist", [])})
    picklists["value"][0].update(OptionSet=None, GlobalOptionSet={"Options": [option(7, "API")]})
    schema = parse_lead_schema(attributes, picklists, strings, memos)
    assert schema.get("hnt_source").option_value("api") == 7


@pytest.mark.parametrize("bad", [{}, {"value": None}, {"value": [{"NoName": 1}]}, [], {"value": ["x"]}])
def test_parse_rejects_non_metadata(bad) -> None:
    attributes, picklists, strings, memos = bodies(MVP_COLUMNS)
    with pytest.raises(ValueError):
        parse_lead_schema(attributes, bad, strings, memos)

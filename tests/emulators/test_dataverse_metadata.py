"""Metadata reads: the entity, attributes with casts and option sets, keys."""
from __future__ import annotations

import pytest

from tests.emulators.conftest import Api, error_of

LEAD = "EntityDefinitions(LogicalName='lead')"
CRM = "Microsoft.Dynamics.CRM."


def _label(item: dict) -> str:
    assert item["Label"]["LocalizedLabels"][0]["Label"] == item["Label"]["UserLocalizedLabel"]["Label"]
    return item["Label"]["UserLocalizedLabel"]["Label"]


def test_entity_definition(api: Api) -> None:
    body = api.get(f"{LEAD}?$select=EntitySetName,PrimaryIdAttribute").json()

    assert body["EntitySetName"] == "leads" and body["PrimaryIdAttribute"] == "leadid"
    assert "MetadataId" in body and "LogicalName" not in body


def test_attributes_list_types_with_odata_type(api: Api) -> None:
    value = api.get(f"{LEAD}/Attributes?$select=LogicalName,AttributeType").json()["value"]

    by_name = {item["LogicalName"]: item for item in value}
    assert by_name["emailaddress1"]["@odata.type"] == f"#{CRM}StringAttributeMetadata"
    assert by_name["emailaddress1"]["AttributeType"] == "String"
    assert by_name["hnt_segment"]["AttributeType"] == "Picklist"
    assert by_name["hnt_ispartnercenterreferral"]["AttributeType"] == "Boolean"
    assert by_name["description"]["AttributeType"] == "Memo"
    assert all(set(item) == {"@odata.type", "MetadataId", "LogicalName", "AttributeType"} for item in value)


def test_attribute_filter_by_type_code(api: Api) -> None:
    params = {"$select": "LogicalName", "$filter": f"AttributeType eq {CRM}AttributeTypeCode'Picklist'"}

    names = {item["LogicalName"] for item in api.get(f"{LEAD}/Attributes", params=params).json()["value"]}

    assert names == {
        "leadsourcecode", "hnt_segment", "hnt_huntertenantsize", "hnt_source", "hnt_processingstatus",
        "hnt_referraltype", "hnt_prioritycategory", "hnt_technicalheat", "hnt_commercialheat",
    }


def test_all_picklists_with_their_options(api: Api) -> None:
    path = f"{LEAD}/Attributes/{CRM}PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)"

    value = api.get(path).json()["value"]

    options = {item["LogicalName"]: [(o["Value"], _label(o)) for o in item["OptionSet"]["Options"]] for item in value}
    assert options["hnt_segment"] == [
        (100000000, "Existing"), (100000001, "New"), (100000002, "Prospect"), (100000003, "Partner")
    ]
    assert options["leadsourcecode"][7] == (8, "Web")
    assert set(value[0]["OptionSet"]) == {"Options", "MetadataId"}


@pytest.mark.parametrize(
    ("cast", "expected"),
    [
        ("StringAttributeMetadata", {"subject": 300, "emailaddress1": 100, "hnt_domain": 253, "hnt_prioritylabel": 10}),
        ("MemoAttributeMetadata", {"description": 2000, "hnt_infrasummary": 4000}),
    ],
)
def test_max_lengths(api: Api, cast: str, expected: dict) -> None:
    value = api.get(f"{LEAD}/Attributes/{CRM}{cast}?$select=LogicalName,MaxLength").json()["value"]

    lengths = {item["LogicalName"]: item["MaxLength"] for item in value}
    assert expected.items() <= lengths.items()
    assert all(item["@odata.type"] == f"#{CRM}{cast}" for item in value)


def test_boolean_option_labels(api: Api) -> None:
    path = f"{LEAD}/Attributes/{CRM}BooleanAttributeMetadata?$select=LogicalName&$expand=OptionSet"

    items = {item["LogicalName"]: item for item in api.get(path).json()["value"]}

    assert set(items) == {"hnt_ispartnercenterreferral", "merged"}
    item = items["hnt_ispartnercenterreferral"]
    assert (item["OptionSet"]["TrueOption"]["Value"], _label(item["OptionSet"]["TrueOption"])) == (1, "Yes")
    assert item["OptionSet"]["FalseOption"]["Value"] == 0


def test_one_picklist_and_its_short_option_set_form(api: Api) -> None:
    single = f"{LEAD}/Attributes(LogicalName='hnt_technicalheat')/{CRM}PicklistAttributeMetadata"

    full = api.get(f"{single}?$select=LogicalName&$expand=OptionSet($select=Options)").json()
    short = api.get(f"{single}/OptionSet?$select=Options").json()

    assert full["LogicalName"] == "hnt_technicalheat" and "MetadataId" in full
    assert [_label(o) for o in full["OptionSet"]["Options"]] == ["Hot", "Warm", "Cold"]
    assert short["Options"] == full["OptionSet"]["Options"]


def test_keys(api: Api) -> None:
    value = api.get(f"{LEAD}/Keys?$select=SchemaName,KeyAttributes,EntityKeyIndexStatus").json()["value"]

    assert [(k["SchemaName"], k["KeyAttributes"], k["EntityKeyIndexStatus"]) for k in value] == [
        ("hnt_domain_key", ["hnt_domain"], "Active")
    ]


def test_definitions_are_reachable_by_metadata_id(api: Api) -> None:
    entity_id = api.get(f"{LEAD}?$select=LogicalName").json()["MetadataId"]
    attribute_id = api.get(f"{LEAD}/Attributes(LogicalName='hnt_segment')?$select=LogicalName").json()["MetadataId"]

    by_id = api.get(f"EntityDefinitions({entity_id})?$select=LogicalName,EntitySetName").json()
    keyed = api.get(f"EntityDefinitions(MetadataId={entity_id})?$select=LogicalName").json()
    named = api.get(f"EntityDefinitions({entity_id})/Attributes(LogicalName='emailaddress1')?$select=MaxLength")
    attribute = api.get(f"EntityDefinitions({entity_id})/Attributes({attribute_id})/{CRM}PicklistAttributeMetadata"
                        "?$select=LogicalName&$expand=OptionSet($select=Options)").json()
    listed = api.get(f"EntityDefinitions({entity_id.upper()})/Attributes?$select=LogicalName").json()["value"]

    assert (by_id["LogicalName"], by_id["EntitySetName"], keyed["LogicalName"]) == ("lead", "leads", "lead")
    assert named.status_code == 400  # MaxLength needs the StringAttributeMetadata cast, by id as by name
    assert attribute["LogicalName"] == "hnt_segment" and len(attribute["OptionSet"]["Options"]) == 4
    assert "emailaddress1" in {item["LogicalName"] for item in listed}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("EntityDefinitions(00000000-0000-0000-0000-000000000001)", 404, "0x80040217"),
        (f"{LEAD}/Attributes(00000000-0000-0000-0000-000000000001)", 404, "0x80040217"),
        (f"{LEAD}/Attributes?$select=MaxLength", 400, "0x0"),
        (f"{LEAD}/Attributes?$select=LogicalName&$expand=OptionSet", 400, "0x0"),
        (f"{LEAD}/Attributes(LogicalName='subject')/{CRM}PicklistAttributeMetadata", 404, "0x8006088a"),
        (f"{LEAD}/Attributes(LogicalName='nope')", 404, "0x80040217"),
        ("EntityDefinitions(LogicalName='account')", 404, "0x80040217"),
        (f"{LEAD}/Attributes/{CRM}EnumAttributeMetadata", 404, "0x8006088a"),
    ],
)
def test_metadata_errors(api: Api, path: str, status: int, code: str) -> None:
    assert error_of(api.get(path))[:2] == (status, code)


def test_schema_changes_show_in_metadata(api: Api) -> None:
    api.control("POST", "schema/columns", {"logical_name": "hnt_tier", "attribute_type": "Picklist",
                                          "options": [{"value": 100000000, "label": "SMB"}]})
    api.control("POST", "schema/columns/hnt_tier/options", {"value": 100000001, "label": "Enterprise"})

    path = f"{LEAD}/Attributes(LogicalName='hnt_tier')/{CRM}PicklistAttributeMetadata?$expand=OptionSet"
    options = api.get(path).json()["OptionSet"]["Options"]

    assert [(o["Value"], _label(o)) for o in options] == [(100000000, "SMB"), (100000001, "Enterprise")]

"""Create, the PATCH upsert matrix (by id and by alternate key), validation and reject rules."""
from __future__ import annotations

import uuid

import pytest

from tests.emulators.conftest import Api, error_of

RETURN = {"Prefer": "return=representation"}


def test_create_answers_204_with_the_entity_id(api: Api) -> None:
    response = api.post("leads", json={"subject": "Hello", "emailaddress1": "a@b.com", "leadsourcecode": 8})

    assert response.status_code == 204
    assert response.headers["OData-Version"] == "4.0"
    entity_id = response.headers["OData-EntityId"]
    lead_id = entity_id.rsplit("(", 1)[1].rstrip(")")
    assert entity_id == f"{api.base}/leads({lead_id})"
    [record] = api.records()
    assert record["leadid"] == lead_id
    assert (record["subject"], record["leadsourcecode"], record["statecode"]) == ("Hello", 8, 0)
    assert record["versionnumber"] and record["createdon"] == record["modifiedon"]


def test_create_with_representation_answers_201_without_entity_id(api: Api) -> None:
    response = api.post("leads?$select=leadid,subject", json={"subject": "Hi"}, headers=RETURN)

    assert response.status_code == 201
    assert "OData-EntityId" not in response.headers
    assert response.headers["Preference-Applied"] == "return=representation"
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    body = response.json()
    assert body["@odata.context"] == f"{api.base}/$metadata#leads(leadid,subject)/$entity"
    assert body["subject"] == "Hi" and body["@odata.etag"].startswith('W/"')
    assert [r["leadid"] for r in api.records()] == [body["leadid"]]


def test_create_with_a_chosen_id_and_again_with_the_same_id(api: Api) -> None:
    lead_id = str(uuid.uuid4())

    first = api.post("leads", json={"leadid": lead_id, "subject": "one"})
    second = api.post("leads", json={"leadid": lead_id, "subject": "two"})

    assert first.headers["OData-EntityId"].endswith(f"({lead_id})")
    assert error_of(second) == (412, "0x80040237", "A record with matching key values already exists.")
    assert [r["subject"] for r in api.records()] == ["one"]


# (headers, record exists?) -> (status, outcome)
@pytest.mark.parametrize(
    ("headers", "exists", "status", "subject_after"),
    [
        ({}, True, 204, "new"),
        ({}, False, 204, "new"),
        ({"If-Match": "*"}, True, 204, "new"),
        ({"If-Match": "*"}, False, 404, None),
        ({"If-None-Match": "*"}, True, 412, "old"),
        ({"If-None-Match": "*"}, False, 204, "new"),
        ({"If-None-Match": "null"}, True, 204, "new"),
        (RETURN, True, 200, "new"),
        (RETURN, False, 201, "new"),
        ({**RETURN, "If-None-Match": "*"}, False, 201, "new"),
    ],
)
def test_patch_by_id_follows_the_upsert_matrix(
    api: Api, headers: dict, exists: bool, status: int, subject_after: str | None
) -> None:
    lead_id = str(uuid.uuid4())
    if exists:
        api.post("leads", json={"leadid": lead_id, "subject": "old", "companyname": "Kept"})

    response = api.patch(f"leads({lead_id})", json={"subject": "new"}, headers=headers)

    assert response.status_code == status, response.text
    records = {r["leadid"]: r for r in api.records()}
    assert (records[lead_id]["subject"] if lead_id in records else None) == subject_after
    if exists and status < 300:
        assert records[lead_id]["companyname"] == "Kept"
    if status == 404:
        assert error_of(response) == (404, "0x80040217", f"lead With Id = {lead_id} Does Not Exist")
    if status == 412:
        assert error_of(response)[1] == "0x80040237"
    if status == 204:
        assert response.headers["OData-EntityId"] == f"{api.base}/leads({lead_id})"
    if status in (200, 201):
        assert response.json()["leadid"] == lead_id
        assert response.headers["ETag"] == response.json()["@odata.etag"]


def test_patch_with_an_etag_updates_only_the_version_it_read(api: Api) -> None:
    lead_id = api.create(subject="v1")
    etag = api.get(f"leads({lead_id})").json()["@odata.etag"]

    fresh = api.patch(f"leads({lead_id})", json={"subject": "v2"}, headers={"If-Match": etag})
    stale = api.patch(f"leads({lead_id})", json={"subject": "v3"}, headers={"If-Match": etag})

    assert fresh.status_code == 204
    assert error_of(stale)[:2] == (412, "0x80060882")
    assert "RowVersion" in error_of(stale)[2]
    assert api.records()[0]["subject"] == "v2"


def test_upsert_by_key_creates_then_updates_the_same_record(api: Api) -> None:
    created = api.patch(
        "leads(hnt_domain='example.com')?$select=leadid", json={"subject": "first"}, headers=RETURN
    )
    updated = api.patch(
        "leads(hnt_domain='EXAMPLE.com')?$select=leadid", json={"subject": "second"}, headers=RETURN
    )

    assert created.status_code == 201 and updated.status_code == 200
    assert created.json()["leadid"] == updated.json()["leadid"]
    assert created.headers["ETag"] != updated.headers["ETag"]
    [record] = api.records()
    assert (record["hnt_domain"], record["subject"]) == ("example.com", "second")


def test_upsert_by_key_echoes_the_key_form(api: Api) -> None:
    response = api.patch("leads(hnt_domain='example.com')", json={"subject": "s"})

    assert response.status_code == 204
    assert response.headers["OData-EntityId"] == f"{api.base}/leads(hnt_domain='example.com')"


@pytest.mark.parametrize(
    "domain",
    ["o'brien.example", "a&b.example", "x/y.example", "hash#tag.example", "50%off.example", "plus+sign", "q?mark"],
)
def test_key_values_with_quotes_and_url_metacharacters_round_trip(api: Api, domain: str) -> None:
    literal = domain.replace("'", "''")
    encoded = "".join(c if c.isalnum() or c in ".-_" else f"%{ord(c):02X}" for c in literal)

    first = api.patch(f"leads(hnt_domain='{encoded}')", json={"subject": "a"})
    second = api.patch(f"leads(hnt_domain='{encoded}')", json={"subject": "b"}, headers={"If-Match": "*"})

    assert (first.status_code, second.status_code) == (204, 204)
    [record] = api.records()
    assert (record["hnt_domain"], record["subject"]) == (domain, "b")


def test_update_by_key_ignores_key_columns_in_the_body(api: Api) -> None:
    api.patch("leads(hnt_domain='a.example')", json={"subject": "s"})

    response = api.patch("leads(hnt_domain='a.example')", json={"hnt_domain": "b.example", "subject": "t"})

    assert response.status_code == 204
    assert [(r["hnt_domain"], r["subject"]) for r in api.records()] == [("a.example", "t")]


def test_create_by_key_takes_key_values_from_the_body_when_given(api: Api) -> None:
    api.patch("leads(hnt_domain='url.example')", json={"hnt_domain": "body.example"})

    assert [r["hnt_domain"] for r in api.records()] == ["body.example"]


def test_a_second_record_with_the_same_key_value_is_refused(api: Api) -> None:
    api.create(subject="one", hnt_domain="taken.example")

    by_create = api.post("leads", json={"subject": "two", "hnt_domain": "TAKEN.example"})
    other = api.create(subject="three", hnt_domain="free.example")
    by_update = api.patch(f"leads({other})", json={"hnt_domain": "taken.example"})

    for response in (by_create, by_update):
        status, code, message = error_of(response)
        assert (status, code) == (412, "0x80060892")
        assert message.startswith("Entity Key hnt_domain_key violated.")
    assert sorted(r["hnt_domain"] for r in api.records()) == ["free.example", "taken.example"]


def test_records_without_a_key_value_do_not_clash(api: Api) -> None:
    api.create(subject="one")
    api.create(subject="two")

    assert len(api.records()) == 2


def test_patch_with_an_undefined_key_is_refused(api: Api) -> None:
    response = api.patch("leads(emailaddress1='a@b.com')", json={"subject": "s"})

    assert error_of(response) == (
        400, "0x80060890", "The specified key attributes are not a defined key for the lead entity"
    )
    assert api.records() == []


def test_update_only_by_key_when_missing_is_404(api: Api) -> None:
    response = api.patch("leads(hnt_domain='none.example')", json={"subject": "s"}, headers={"If-Match": "*"})

    assert error_of(response) == (
        404, "0x80060891", "A record with the specified key values does not exist in lead entity"
    )


def test_multi_part_and_numeric_keys(api: Api) -> None:
    key = api.control("POST", "keys", {"name": "hnt_company_source", "columns": ["hnt_companyid", "hnt_source"]})
    assert key.json()["status"] == "Active"

    created = api.patch("leads(hnt_companyid=42,hnt_source=100000002)", json={"subject": "a"}, headers=RETURN)
    updated = api.patch("leads(hnt_source=100000002,hnt_companyid=42)", json={"subject": "b"}, headers=RETURN)
    partial = api.patch("leads(hnt_companyid=42)", json={"subject": "c"})

    assert (created.status_code, updated.status_code) == (201, 200)
    assert error_of(partial)[:2] == (400, "0x80060890")
    [record] = api.records()
    assert (record["hnt_companyid"], record["hnt_source"], record["subject"]) == (42, 100000002, "b")


@pytest.mark.parametrize(
    ("body", "code", "message_part"),
    [
        ({"hnt_foo": 1}, "0x80048d19", "Invalid property 'hnt_foo' was found in entity 'Microsoft.Dynamics.CRM.lead'"),
        ({"Subject": "x"}, "0x80048d19", "Invalid property 'Subject'"),
        ({"subject": "x" * 301}, "0x80044331",
         "A validation error occurred.  The length of the 'subject' attribute of the 'lead' entity exceeded the "
         "maximum allowed length of '300'."),
        ({"hnt_prioritylabel": "x" * 11}, "0x80044331", "maximum allowed length of '10'"),
        ({"leadsourcecode": 11}, "0x8004431A", "The value 11 of 'leadsourcecode'"),
        ({"hnt_segment": 7}, "0x8004431A", "Accepted Values: 100000000,100000001,100000002,100000003"),
        ({"hnt_segment": "Partner"}, "0x80048d19", "Cannot convert the literal 'Partner' to the expected type 'Edm.Int32'"),
        ({"hnt_companyid": "12"}, "0x80048d19", "'Edm.Int32'"),
        ({"hnt_companyid": 1.5}, "0x80048d19", "'Edm.Int32'"),
        ({"hnt_companyid": True}, "0x80048d19", "'Edm.Int32'"),
        ({"hnt_ispartnercenterreferral": "yes"}, "0x80048d19", "'Edm.Boolean'"),
        ({"subject": 5}, "0x80048d19", "'Edm.String'"),
        ({"leadid": "not-a-guid"}, "0x80048d19", "'Edm.Guid'"),
        ({"parentaccountid@odata.bind": "/accounts(1)"}, "0x80048d19", "An undeclared property 'parentaccountid'"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_invalid_bodies_are_refused(api: Api, method: str, body: dict, code: str, message_part: str) -> None:
    path = "leads" if method == "POST" else f"leads({uuid.uuid4()})"

    response = api.request(method, path, json=body)

    status, actual_code, message = error_of(response)
    assert (status, actual_code) == (400, code)
    assert message_part in message
    assert api.records() == []


def test_valid_values_of_every_type_are_accepted_and_nulls_clear(api: Api) -> None:
    lead_id = api.create(
        subject="x" * 300, hnt_companyid=-5, hnt_segment=100000003, hnt_ispartnercenterreferral=True,
        description="d" * 2000, leadsourcecode=8,
    )

    response = api.patch(f"leads({lead_id})", json={"hnt_segment": None, "description": None})

    assert response.status_code == 204
    [record] = api.records()
    assert record["hnt_segment"] is None and record["description"] is None
    assert record["hnt_ispartnercenterreferral"] is True and record["hnt_companyid"] == -5


def test_required_columns_are_not_enforced_and_read_only_columns_are_ignored(api: Api) -> None:
    lead_id = api.create(firstname="Ada", lastname="Lovelace", fullname="ignored", statecode=1)

    [record] = api.records()
    assert record["leadid"] == lead_id
    assert record["fullname"] == "Ada Lovelace" and record["statecode"] == 0 and "subject" not in record


def test_reject_rules_apply_to_the_resulting_record(api: Api) -> None:
    rule = {"column": "companyname", "equals": "reject me", "status": 400, "code": "0x80040265",
            "message": "Plug-in rejected the lead"}
    assert api.control("POST", "rules", rule).status_code == 201
    lead_id = api.create(companyname="fine")

    create = api.post("leads", json={"companyname": "reject me"})
    update = api.patch(f"leads({lead_id})", json={"companyname": "reject me"})
    api.control("DELETE", "rules")
    after = api.post("leads", json={"companyname": "reject me"})

    assert error_of(create) == error_of(update) == (400, "0x80040265", "Plug-in rejected the lead")
    assert after.status_code == 204
    assert sorted(r["companyname"] for r in api.records()) == ["fine", "reject me"]


def test_not_valid_json_is_a_400(api: Api) -> None:
    response = api.post("leads", data=b"{nope", headers={"Content-Type": "application/json"})

    assert error_of(response)[:2] == (400, "0x80048d19")

"""The lead's lifecycle columns over the Web API (docs/dataverse.md 11.1, 11.2, 11.4, 11.5): state and
status reason, owner, merged and master, the timestamps, their metadata, and what a representation answers."""
from __future__ import annotations

import re
import uuid

import pytest

from local.emulators.dataverse.lifecycle import DEFAULT_OWNER_ID, STATUS_MISMATCH_CODE
from tests.emulators.conftest import Api, error_of

RETURN = {"Prefer": "return=representation"}
OUTCOME = "leadid,statecode,statuscode,_ownerid_value,merged,_masterid_value"
DATAVERSE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")  # UTC, whole seconds
LEAD = "EntityDefinitions(LogicalName='lead')"
CRM = "Microsoft.Dynamics.CRM."


def _get(api: Api, lead_id: str, select: str = OUTCOME) -> dict:
    response = api.get(f"leads({lead_id})?$select={select}")
    assert response.status_code == 200, response.text
    return response.json()


def _outcome(body: dict) -> tuple:
    return body["statecode"], body["statuscode"], body["_ownerid_value"], body["merged"], body["_masterid_value"]


def test_a_new_lead_is_open_new_owned_by_the_default_user_and_not_merged(api: Api) -> None:
    lead_id = api.create(subject="s")

    body = _get(api, lead_id, OUTCOME + ",createdon,modifiedon")

    assert _outcome(body) == (0, 1, DEFAULT_OWNER_ID, False, None)
    assert DATAVERSE_TIME.match(body["createdon"]) and body["modifiedon"] == body["createdon"]


def test_statecode_is_ignored_on_create_and_a_create_takes_only_an_open_status(api: Api) -> None:
    contacted = api.create(subject="s", statecode=2, statuscode=2)

    assert _outcome(_get(api, contacted))[:2] == (0, 2)
    status, code, message = error_of(api.post("leads", json={"subject": "s", "statuscode": 3}))
    assert (status, code) == (400, STATUS_MISMATCH_CODE)
    assert message.startswith("3 is not a valid status code for state code LeadState.Open on lead with Id ")
    assert len(api.records()) == 1


@pytest.mark.parametrize(
    ("body", "state", "status"),
    [
        ({"statecode": 2, "statuscode": 6}, 2, 6),
        ({"statecode": 1, "statuscode": 3}, 1, 3),
        ({"statecode": 2}, 2, 4),  # a state alone takes its default status
        ({"statuscode": 2}, 0, 2),  # a status alone stays in the current state
    ],
)
def test_a_patch_with_state_and_status_changes_state(api: Api, body: dict, state: int, status: int) -> None:
    lead_id = api.create(subject="s")

    response = api.patch(f"leads({lead_id})?$select={OUTCOME}", json=body, headers={**RETURN, "If-Match": "*"})

    assert response.status_code == 200, response.text
    assert _outcome(response.json())[:2] == (state, status)
    assert _outcome(_get(api, lead_id))[:2] == (state, status)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"statecode": 2, "statuscode": 3}, "3 is not a valid status code for state code LeadState.Disqualified"),
        ({"statecode": 0, "statuscode": 7}, "7 is not a valid status code for state code LeadState.Open"),
        ({"statuscode": 4}, "4 is not a valid status code for state code LeadState.Open"),
    ],
)
def test_a_status_not_of_its_state_is_refused_and_nothing_changes(api: Api, body: dict, message: str) -> None:
    lead_id = api.create(subject="s")
    before = api.get(f"leads({lead_id})").headers["ETag"]

    refused = api.patch(f"leads({lead_id})", json={**body, "subject": "changed"})

    assert error_of(refused) == (400, STATUS_MISMATCH_CODE, f"{message} on lead with Id {lead_id}.")
    after = api.get(f"leads({lead_id})")
    assert after.headers["ETag"] == before and after.json()["subject"] == "s"


def test_a_write_moves_modifiedon_and_the_etag_but_never_createdon(api: Api) -> None:
    lead_id = api.create(subject="s")
    first = _get(api, lead_id, "createdon,modifiedon,versionnumber")

    api.patch(f"leads({lead_id})", json={"subject": "t"})

    second = _get(api, lead_id, "createdon,modifiedon,versionnumber")
    assert second["createdon"] == first["createdon"] and DATAVERSE_TIME.match(second["modifiedon"])
    assert second["modifiedon"] >= first["modifiedon"]
    assert second["versionnumber"] > first["versionnumber"] and second["@odata.etag"] != first["@odata.etag"]


def test_the_owner_is_bound_by_reference_and_read_as_its_value(api: Api) -> None:
    user, team = str(uuid.uuid4()), str(uuid.uuid4())

    response = api.post(f"leads?$select={OUTCOME}", headers=RETURN,
                        json={"subject": "s", "ownerid@odata.bind": f"/systemusers({user})"})
    lead_id = response.json()["leadid"]
    reassigned = api.patch(f"leads({lead_id})", json={"ownerid@odata.bind": f"{api.base}/teams({team.upper()})"})

    assert response.status_code == 201 and response.json()["_ownerid_value"] == user
    assert reassigned.status_code == 204
    assert _get(api, lead_id)["_ownerid_value"] == team
    assert api.get(f"leads?$select=subject&$filter=_ownerid_value eq {team}").json()["value"][0]["leadid"] == lead_id


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"ownerid@odata.bind": "/leads(00000000-0000-0000-0000-000000000001)"}, "systemusers or teams"),
        ({"ownerid@odata.bind": "/systemusers(not-a-guid)"}, "systemusers or teams"),
        ({"ownerid": "00000000-0000-0000-0000-000000000001"}, "navigation property"),
        ({"_ownerid_value": "00000000-0000-0000-0000-000000000001"}, "Invalid property '_ownerid_value'"),
        ({"subject@odata.bind": "/systemusers(00000000-0000-0000-0000-000000000001)"}, "undeclared property"),
    ],
)
def test_a_bad_owner_is_refused(api: Api, body: dict, fragment: str) -> None:
    status, code, message = error_of(api.post("leads", json=body))

    assert (status, code) == (400, "0x80048d19") and fragment in message
    assert api.records() == []


def test_merged_and_master_are_read_only_over_the_web_api(api: Api) -> None:
    other = api.create(subject="other")
    lead_id = api.create(subject="s", merged=True)

    response = api.patch(f"leads({lead_id})", json={"merged": True, "masterid@odata.bind": f"/leads({other})"})

    assert response.status_code == 204
    assert _outcome(_get(api, lead_id))[3:] == (False, None)


def test_lifecycle_columns_are_selected_filtered_and_ordered_by_their_web_api_names(api: Api) -> None:
    api.create(subject="a")
    closed = api.create(subject="b")
    api.patch(f"leads({closed})", json={"statecode": 2, "statuscode": 5})

    rows = api.get(f"leads?$select={OUTCOME},modifiedon,hnt_companyid"
                   "&$filter=statecode eq 2 or merged eq true&$orderby=_ownerid_value asc,leadid asc").json()["value"]

    assert [(row["leadid"], row["statuscode"], row["hnt_companyid"]) for row in rows] == [(closed, 5, None)]
    for name in ("ownerid", "masterid"):
        assert error_of(api.get(f"leads?$select={name}"))[:2] == (400, "0x0")


@pytest.mark.parametrize("target", ["update", "upsert by key, created", "upsert by key, updated", "create"])
def test_a_representation_answers_the_outcome_columns(api: Api, target: str) -> None:
    existing = api.create(subject="s", hnt_domain="known.example")
    api.patch(f"leads({existing})", json={"statecode": 1, "statuscode": 3})
    method, path = {
        "update": ("PATCH", f"leads({existing})"),
        "upsert by key, created": ("PATCH", "leads(hnt_domain='new.example')"),
        "upsert by key, updated": ("PATCH", "leads(hnt_domain='known.example')"),
        "create": ("POST", "leads"),
    }[target]

    response = api.request(method, f"{path}?$select={OUTCOME}", json={"hnt_finalscore": 5}, headers=RETURN)

    assert response.status_code in (200, 201), response.text
    body = response.json()
    assert body["@odata.context"] == f"{api.base}/$metadata#leads({OUTCOME})/$entity"
    expected_state = (1, 3) if target in ("update", "upsert by key, updated") else (0, 1)
    assert _outcome(body) == (*expected_state, DEFAULT_OWNER_ID, False, None)
    assert set(body) == {"@odata.context", "@odata.etag", *OUTCOME.split(",")}


def test_lifecycle_columns_in_metadata(api: Api) -> None:
    value = api.get(f"{LEAD}/Attributes?$select=LogicalName,AttributeType,IsValidForCreate,IsValidForUpdate"
                    ).json()["value"]
    by_name = {item["LogicalName"]: item for item in value}

    kinds = {name: by_name[name]["AttributeType"] for name in
             ("statecode", "statuscode", "ownerid", "merged", "masterid", "createdon", "modifiedon")}
    assert kinds == {"statecode": "State", "statuscode": "Status", "ownerid": "Owner", "merged": "Boolean",
                     "masterid": "Lookup", "createdon": "DateTime", "modifiedon": "DateTime"}
    assert by_name["ownerid"]["@odata.type"] == f"#{CRM}LookupAttributeMetadata"
    assert [(by_name[n]["IsValidForCreate"], by_name[n]["IsValidForUpdate"]) for n in ("statecode", "merged",
                                                                                         "masterid", "ownerid")] == [
        (False, True), (False, False), (False, False), (True, True)]
    lookups = api.get(f"{LEAD}/Attributes/{CRM}LookupAttributeMetadata?$select=LogicalName,Targets").json()["value"]
    assert {item["LogicalName"]: item["Targets"] for item in lookups} == {"ownerid": ["systemuser", "team"],
                                                                          "masterid": ["lead"]}
    states = api.get(f"{LEAD}/Attributes(LogicalName='statuscode')/{CRM}StatusAttributeMetadata/OptionSet"
                     "?$select=Options").json()["Options"]
    assert [option["Value"] for option in states] == [1, 2, 3, 4, 5, 6, 7]

"""CreateMultiple, UpdateMultiple, UpsertMultiple on leads, and sdkmessagefilters (docs/dataverse.md 7.2)."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.emulators.conftest import Api, error_of

LEAD = "Microsoft.Dynamics.CRM.lead"
ANNOTATIONS = {"Prefer": 'odata.include-annotations="*"'}
DETAILS = "@Microsoft.PowerApps.CDS.ErrorDetails.BulkApiErrorDetails"


def target(**values: object) -> dict:
    return {"@odata.type": LEAD, **values}


def bulk(api: Api, action: str, targets: list[dict], **kwargs: object):
    return api.post(f"leads/Microsoft.Dynamics.CRM.{action}", json={"Targets": targets}, **kwargs)


def by_id(api: Api) -> dict[str, dict]:
    return {record["leadid"]: record for record in api.records()}


def test_create_multiple_answers_the_ids_in_input_order(api: Api) -> None:
    chosen = str(uuid.uuid4())
    targets = [target(subject="a"), target(leadid=chosen, subject="b"), target(subject="c")]

    response = bulk(api, "CreateMultiple", targets)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == f"{api.base}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    assert body["Ids"][1] == chosen
    records = by_id(api)
    assert [records[i]["subject"] for i in body["Ids"]] == ["a", "b", "c"]


def test_update_multiple_answers_204_and_applies_only_the_first_of_repeated_records(api: Api) -> None:
    one, two = api.create(subject="one", companyname="Kept"), api.create(subject="two")

    response = bulk(api, "UpdateMultiple", [target(leadid=one, subject="1"), target(leadid=two, subject="2"),
                                            target(leadid=one, subject="ignored")])

    assert (response.status_code, response.content) == (204, b"")
    records = by_id(api)
    assert (records[one]["subject"], records[one]["companyname"], records[two]["subject"]) == ("1", "Kept", "2")


def test_update_multiple_of_a_missing_record_names_it_and_writes_nothing(api: Api) -> None:
    existing, missing = api.create(subject="old"), str(uuid.uuid4())
    targets = [target(leadid=existing, subject="new"), target(leadid=missing, subject="x")]

    response = bulk(api, "UpdateMultiple", targets)

    assert error_of(response) == (404, "0x80040217", f"lead With Ids = {missing} Do Not Exist")
    assert [r["subject"] for r in api.records()] == ["old"]


def test_update_multiple_needs_the_primary_key(api: Api) -> None:
    assert error_of(bulk(api, "UpdateMultiple", [target(hnt_domain="x.com", subject="s")]))[0] == 400


def test_upsert_multiple_by_primary_key_creates_and_updates(api: Api) -> None:
    existing, new = api.create(subject="old", companyname="Kept"), str(uuid.uuid4())

    response = bulk(api, "UpsertMultiple", [target(leadid=existing, subject="updated"),
                                            target(leadid=new, subject="created", hnt_domain="new.com")])

    assert (response.status_code, response.content) == (204, b"")
    records = by_id(api)
    assert (records[existing]["subject"], records[existing]["companyname"]) == ("updated", "Kept")
    assert (records[new]["subject"], records[new]["hnt_domain"]) == ("created", "new.com")


def test_upsert_multiple_by_alternate_key_in_odata_id(api: Api) -> None:
    existing = api.create(subject="old", hnt_domain="old.com")

    response = bulk(api, "UpsertMultiple", [
        target(**{"@odata.id": "leads(hnt_domain='old.com')"}, subject="updated"),
        target(**{"@odata.id": "leads(hnt_domain='new.com')"}, subject="created"),
    ])

    assert response.status_code == 204, response.text
    records = {r["hnt_domain"]: r for r in api.records()}
    assert (records["old.com"]["leadid"], records["old.com"]["subject"]) == (existing, "updated")
    assert records["new.com"]["subject"] == "created"


def test_upsert_multiple_key_repeated_in_the_body_fails_on_create_but_not_on_update(api: Api) -> None:
    api.create(subject="old", hnt_domain="old.com")
    update = target(**{"@odata.id": "leads(hnt_domain='old.com')"}, hnt_domain="old.com", subject="updated")
    create = target(**{"@odata.id": "leads(hnt_domain='new.com')"}, hnt_domain="new.com", subject="created")

    failed = bulk(api, "UpsertMultiple", [update, create])
    updated = bulk(api, "UpsertMultiple", [update])

    assert error_of(failed) == (400, "0x80040216", "An unexpected error occurred.")
    assert updated.status_code == 204
    assert [(r["hnt_domain"], r["subject"]) for r in api.records()] == [("old.com", "updated")]


def test_upsert_multiple_with_the_same_record_twice_fails_whole(api: Api) -> None:
    lead_id = str(uuid.uuid4())

    response = bulk(api, "UpsertMultiple", [target(leadid=lead_id, subject="a"), target(leadid=lead_id, subject="b")])

    assert error_of(response)[0] == 400
    assert api.records() == []


def test_a_rejected_record_fails_the_whole_request_and_nothing_is_written(api: Api) -> None:
    existing = api.create(subject="before", hnt_domain="kept.com")
    api.control("POST", "rules", {"column": "subject", "equals": "bad", "status": 400, "code": "0x80040265",
                                  "message": "Plug-in rejected the lead"})
    bad = str(uuid.uuid4())
    targets = [target(leadid=existing, subject="after", hnt_domain="moved.com"),
               target(leadid=str(uuid.uuid4()), subject="fine"),
               target(leadid=bad, subject="bad")]

    response = bulk(api, "UpsertMultiple", targets)

    assert error_of(response) == (400, "0x80040265", "Plug-in rejected the lead")
    assert DETAILS not in response.json()["error"]
    assert [(r["leadid"], r["subject"], r["hnt_domain"]) for r in api.records()] == [(existing, "before", "kept.com")]
    # The indexes were rolled back too: the old key still finds the record, the new one is free.
    assert api.get("leads(hnt_domain='kept.com')").json()["leadid"] == existing
    assert error_of(api.get("leads(hnt_domain='moved.com')"))[0] == 404


def test_with_annotations_the_error_names_the_failing_target(api: Api) -> None:
    api.control("POST", "rules", {"column": "subject", "equals": "bad", "status": 400, "code": "0x80040265",
                                  "message": "Plug-in rejected the lead"})
    bad = str(uuid.uuid4())

    response = bulk(api, "UpsertMultiple", [target(leadid=str(uuid.uuid4()), subject="ok"),
                                            target(leadid=bad, subject="bad")], headers=ANNOTATIONS)

    error = response.json()["error"]
    assert json.loads(error[DETAILS]) == [{"RequestIndex": 1, "Id": bad, "StatusCode": 400}]
    assert api.records() == []


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ({"subject": "x" * 301}, 400, "0x80044331"),
        ({"leadsourcecode": 99}, 400, "0x8004431A"),
        ({"hnt_nope": 1}, 400, "0x80048d19"),
        ({"hnt_domain": "taken.com"}, 412, "0x80060892"),
    ],
    ids=["too-long", "bad-choice", "unknown-column", "key-clash"],
)
def test_single_write_validation_applies_to_every_target(api: Api, bad: dict, status: int, code: str) -> None:
    api.create(subject="holder", hnt_domain="taken.com")

    for action in ("CreateMultiple", "UpsertMultiple"):
        response = bulk(api, action, [target(leadid=str(uuid.uuid4()), subject="ok"),
                                      target(leadid=str(uuid.uuid4()), **bad)])
        assert error_of(response)[:2] == (status, code), action
    assert [r["subject"] for r in api.records()] == ["holder"]


def test_two_targets_with_the_same_new_key_clash(api: Api) -> None:
    response = bulk(api, "CreateMultiple", [target(hnt_domain="same.com"), target(hnt_domain="SAME.com")])

    assert error_of(response)[:2] == (412, "0x80060892")
    assert api.records() == []


@pytest.mark.parametrize(
    "body",
    [{}, {"Targets": {}}, {"Targets": [{"subject": "no type"}]},
     {"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.account"}]}, {"Targets": ["x"]}],
    ids=["no-targets", "not-a-list", "no-type", "wrong-type", "not-an-entity"],
)
def test_malformed_targets_are_refused(api: Api, body: dict) -> None:
    response = api.post("leads/Microsoft.Dynamics.CRM.UpsertMultiple", json=body)

    assert error_of(response)[:2] == (400, "0x80048d19")


def test_unknown_action_and_wrong_method(api: Api) -> None:
    assert error_of(api.post("leads/Microsoft.Dynamics.CRM.DeleteMultiple", json={"Targets": []}))[:2] == (
        404, "0x8006088a")
    assert error_of(api.get("leads/Microsoft.Dynamics.CRM.UpsertMultiple"))[0] == 405


def test_bulk_requests_are_counted_by_kind(api: Api) -> None:
    api.control("POST", "stats/reset")

    bulk(api, "UpsertMultiple", [target(leadid=str(uuid.uuid4()), subject="a")])
    bulk(api, "UpsertMultiple", [target(leadid=str(uuid.uuid4()), subject="b")])
    bulk(api, "CreateMultiple", [target(subject="c")])

    stats = api.control("GET", "stats").json()
    assert stats["requests"] == 3
    assert (stats["by_kind"]["POST UpsertMultiple"], stats["by_kind"]["POST CreateMultiple"]) == (2, 1)


MESSAGE_QUERY = ("sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq @message and "
                 "primaryobjecttypecode eq @table&@message='{message}'&@table='{table}'")


def supports(api: Api, message: str, table: str = "lead") -> bool:
    response = api.get(MESSAGE_QUERY.format(message=message, table=table))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == f"{api.base}/$metadata#sdkmessagefilters(sdkmessagefilterid)"
    return bool(body["value"])


def test_sdkmessagefilters_answer_as_an_org_with_bulk_support_by_default(api: Api) -> None:
    assert supports(api, "CreateMultiple") and supports(api, "UpdateMultiple")
    assert not supports(api, "UpsertMultiple")  # never listed, as on the real service
    assert not supports(api, "CreateMultiple", "account")
    inline = api.get("sdkmessagefilters?$filter=sdkmessageid/name eq 'UpdateMultiple' and "
                     "primaryobjecttypecode eq 'lead'").json()["value"]
    assert len(inline) == 1 and set(inline[0]) == {"@odata.etag", "sdkmessagefilterid"}


def test_without_bulk_support_the_filters_are_empty_and_the_actions_refused(api: Api) -> None:
    assert api.control("POST", "bulk", {"supported": False}).json() == {"supported": False}

    assert not supports(api, "CreateMultiple") and not supports(api, "UpdateMultiple")
    response = bulk(api, "UpsertMultiple", [target(subject="a")])
    status, _, message = error_of(response)
    assert status == 400 and message.startswith("The 'UpsertMultiple' method does not support entities of type 'lead'.")
    assert api.records() == []

    api.control("POST", "reset")
    assert api.control("GET", "bulk").json() == {"supported": True}
    assert supports(api, "CreateMultiple")


def test_sdkmessagefilters_query_errors(api: Api) -> None:
    assert error_of(api.get("sdkmessagefilters?$select=name"))[:2] == (400, "0x0")
    assert error_of(api.get("sdkmessagefilters?$filter=nope eq 'x'"))[:2] == (400, "0x0")
    assert error_of(api.get("sdkmessagefilters?$filter=sdkmessageid/name eq @m"))[:2] == (400, "0x0")
    assert api.control("POST", "bulk", {"supported": "no"}).status_code == 400

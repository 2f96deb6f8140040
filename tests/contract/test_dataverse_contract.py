"""The Dataverse client's contract as the lead writer and pusher use it: the same tests against
`FakeDataverse` and `DataverseClient` talking to the Dataverse emulator (tokens from the
managed-identity emulator). Error types, status codes and Dataverse's codes must agree."""
from __future__ import annotations

import uuid

import pytest

from d365.errors import (
    D365APIError,
    D365ConnectionError,
    D365DuplicateError,
    D365NotFoundError,
    D365RateLimitError,
    D365RecordChangedError,
    is_unknown_column,
    unknown_column_name,
)
from local.emulators.dataverse.schema import PROFILES
from tests.contract.conftest import DataverseHarness
from tests.fakes.dataverse import guid_order
from tests.fakes.faults import COMMIT_THEN_DROP, DROP_BEFORE, Fault, throttled, unavailable


def payload(n: int = 1, **values) -> dict:
    return {"subject": f"Hunter: c{n}.example", "companyname": f"c{n}", "emailaddress1": f"it@c{n}.example",
            "websiteurl": f"https://c{n}.example", "hnt_companyid": n, **values}


def new_id() -> str:
    return str(uuid.uuid4())


def record(side: DataverseHarness, lead_id: str) -> dict:
    return next(r for r in side.records() if r["leadid"] == lead_id)


# --- writes ------------------------------------------------------------------------------------------


def test_create_with_an_id_answers_its_etag_and_refuses_a_second_create(dataverse_side: DataverseHarness) -> None:
    client, lead_id = dataverse_side.client, new_id()

    etag = client.create_lead(lead_id, payload(1))

    assert etag.startswith('W/"') and client.get_lead_etag(lead_id) == etag
    stored = record(dataverse_side, lead_id)
    assert (stored["companyname"], stored["hnt_companyid"], stored["emailaddress1"]) == ("c1", 1, "it@c1.example")
    with pytest.raises(D365DuplicateError) as duplicate:
        client.create_lead(lead_id, payload(2))
    assert (duplicate.value.status, duplicate.value.code) == (412, "0x80040237")
    assert not duplicate.value.transient
    assert record(dataverse_side, lead_id)["companyname"] == "c1"


def test_an_update_at_the_current_etag_lands_and_a_stale_one_is_refused(dataverse_side: DataverseHarness) -> None:
    client, lead_id = dataverse_side.client, new_id()
    first = client.create_lead(lead_id, payload(1))

    second = client.update_lead(lead_id, payload(1, companyname="renamed"), etag=first)
    assert second != first and client.get_lead_etag(lead_id) == second

    with pytest.raises(D365RecordChangedError) as changed:
        client.update_lead(lead_id, payload(1, companyname="stale"), etag=first)
    assert (changed.value.status, changed.value.code) == (412, "0x80060882")
    assert not changed.value.earlier_attempt_unanswered
    assert record(dataverse_side, lead_id)["companyname"] == "renamed"

    third = client.update_lead(lead_id, payload(1, companyname="any"))  # If-Match: *
    assert third != second and record(dataverse_side, lead_id)["companyname"] == "any"


def test_a_missing_record_is_not_found(dataverse_side: DataverseHarness) -> None:
    client, lead_id = dataverse_side.client, new_id()
    for call in (lambda: client.update_lead(lead_id, payload(1)),
                 lambda: client.update_lead(lead_id, payload(1), etag='W/"1000001"'),
                 lambda: client.get_lead_etag(lead_id)):
        with pytest.raises(D365NotFoundError) as missing:
            call()
        assert (missing.value.status, missing.value.code, missing.value.transient) == (404, "0x80040217", False)
    assert dataverse_side.records() == []


def test_an_unknown_column_in_a_body_is_refused_with_its_name(dataverse_side: DataverseHarness) -> None:
    client, lead_id = dataverse_side.client, new_id()
    with pytest.raises(D365APIError) as refused:
        client.create_lead(lead_id, payload(1, hnt_nosuchcolumn="x"))
    assert (refused.value.status, refused.value.code) == (400, "0x80048d19")
    assert unknown_column_name(refused.value) == "hnt_nosuchcolumn"

    client.create_lead(lead_id, payload(1, hnt_provider="M365"))
    dataverse_side.remove_column("hnt_provider")
    with pytest.raises(D365APIError) as removed:
        client.update_lead(lead_id, payload(1, hnt_provider="M365"))
    assert is_unknown_column(removed.value) and unknown_column_name(removed.value) == "hnt_provider"
    assert "hnt_provider" not in client.read_lead_schema().columns


def test_an_unknown_column_in_its_documented_form(dataverse_side: DataverseHarness) -> None:
    dataverse_side.unknown_column_code("0x0")
    with pytest.raises(D365APIError) as refused:
        dataverse_side.client.create_lead(new_id(), payload(1, hnt_nosuchcolumn="x"))
    assert (refused.value.status, refused.value.code) == (400, "0x0")
    assert unknown_column_name(refused.value) == "hnt_nosuchcolumn"


def test_a_value_over_max_length_is_refused(dataverse_side: DataverseHarness) -> None:
    with pytest.raises(D365APIError) as refused:
        dataverse_side.client.create_lead(new_id(), payload(1, companyname="x" * 101))
    assert (refused.value.status, refused.value.code, refused.value.transient) == (400, "0x80044331", False)


def test_a_write_an_org_rule_refuses_changes_nothing(dataverse_side: DataverseHarness) -> None:
    client, lead_id = dataverse_side.client, new_id()
    etag = client.create_lead(lead_id, payload(1))
    dataverse_side.add_rule("hnt_provider", "Rejected", status=400, code="0x80040203", message="Invalid provider")

    for call in (lambda: client.update_lead(lead_id, payload(1, hnt_provider="Rejected"), etag=etag),
                 lambda: client.create_lead(new_id(), payload(2, hnt_provider="Rejected"))):
        with pytest.raises(D365APIError) as refused:
            call()
        assert (refused.value.status, refused.value.code, refused.value.message) == (400, "0x80040203",
                                                                                       "Invalid provider")
        assert not refused.value.transient
    assert client.get_lead_etag(lead_id) == etag and len(dataverse_side.records()) == 1


# --- lookups -----------------------------------------------------------------------------------------


def test_find_leads_matches_any_column_ignoring_case_oldest_first(dataverse_side: DataverseHarness) -> None:
    client = dataverse_side.client
    # Text order and SQL Server's GUID order disagree on these ids (the last six bytes weigh most).
    ids = ["00000000-0000-4000-8000-000000000002", "ffffffff-0000-4000-8000-000000000001",
           "11111111-0000-4000-8000-000000000003"]
    for lead_id in ids:
        client.create_lead(lead_id, payload(7, emailaddress1="Info@Shared.example"))
    client.create_lead(new_id(), payload(8, websiteurl="https://other.example"))
    by_hand = dataverse_side.add_record({"subject": "by hand", "lastname": "x", "websiteurl": "HTTPS://C9.EXAMPLE"})

    found = client.find_leads([("emailaddress1", "info@shared.EXAMPLE"), ("websiteurl", "https://c9.example")],
                              select=["hnt_companyid", "createdon"])

    assert sorted(r["leadid"] for r in found) == sorted([*ids, by_hand])
    assert [r["leadid"] for r in found] == [r["leadid"] for r in
                                            sorted(found, key=lambda r: (r["createdon"], guid_order(r["leadid"])))]
    hand_made = next(r for r in found if r["leadid"] == by_hand)
    assert hand_made["hnt_companyid"] is None and hand_made["emailaddress1"] is None
    for item in found:
        assert {"@odata.etag", "leadid", "emailaddress1", "websiteurl", "hnt_companyid"} <= set(item)
        assert item["@odata.etag"] == client.get_lead_etag(item["leadid"])


def test_find_leads_stops_at_top_and_sends_nothing_without_matches(dataverse_side: DataverseHarness) -> None:
    client = dataverse_side.client
    for _ in range(3):
        client.create_lead(new_id(), payload(5))
    assert len(client.find_leads([("emailaddress1", "it@c5.example")], top=2)) == 2
    assert client.find_leads([]) == []
    assert client.find_leads([("emailaddress1", "nobody@none.example")]) == []


def test_find_leads_on_an_unknown_column_is_refused(dataverse_side: DataverseHarness) -> None:
    with pytest.raises(D365APIError) as refused:
        dataverse_side.client.find_leads([("emailaddress1", "a@b.c")], select=["hnt_nosuchcolumn"])
    assert (refused.value.status, refused.value.code) == (400, "0x0")
    assert unknown_column_name(refused.value) == "hnt_nosuchcolumn"


# --- alternate keys ----------------------------------------------------------------------------------


def test_upsert_by_key_creates_then_updates_one_record(keyed_dataverse_side: DataverseHarness) -> None:
    client = keyed_dataverse_side.client

    lead_id, etag, created = client.upsert_lead_by_key({"hnt_domain": "c1.example"}, payload(1, hnt_domain="x"))
    again_id, again_etag, again_created = client.upsert_lead_by_key({"hnt_domain": "C1.example"},
                                                                    payload(1, companyname="renamed"))

    assert (created, again_created) == (True, False)
    assert again_id == lead_id and again_etag != etag
    stored = keyed_dataverse_side.records()
    assert len(stored) == 1 and stored[0]["hnt_domain"] == "c1.example" and stored[0]["companyname"] == "renamed"


def test_a_write_that_takes_another_records_key_is_a_duplicate(keyed_dataverse_side: DataverseHarness) -> None:
    client, first, second = keyed_dataverse_side.client, new_id(), new_id()
    client.create_lead(first, payload(1, hnt_domain="c1.example"))
    etag = client.create_lead(second, payload(2, hnt_domain="c2.example"))

    for call in (lambda: client.update_lead(second, payload(2, hnt_domain="C1.EXAMPLE"), etag=etag),
                 lambda: client.update_lead(second, payload(2, hnt_domain="c1.example")),
                 lambda: client.create_lead(new_id(), payload(3, hnt_domain="c2.example"))):
        with pytest.raises(D365DuplicateError) as duplicate:
            call()
        assert (duplicate.value.status, duplicate.value.code) == (412, "0x80060892")
    assert len(keyed_dataverse_side.records()) == 2


def test_upsert_by_a_column_that_is_no_key_is_refused(dataverse_side: DataverseHarness) -> None:
    with pytest.raises(D365APIError) as refused:
        dataverse_side.client.upsert_lead_by_key({"hnt_domain": "c1.example"}, payload(1))
    assert (refused.value.status, refused.value.code, refused.value.transient) == (400, "0x80060890", False)


# --- metadata ----------------------------------------------------------------------------------------


def test_the_schema_is_the_profiles(dataverse_side: DataverseHarness) -> None:
    schema = dataverse_side.client.read_lead_schema()

    assert set(schema.columns) == {column.logical_name for column in PROFILES["mvp"]}
    assert schema.get("hnt_infrasummary").max_length == 4000
    assert schema.get("hnt_companyid").attribute_type == "Integer"
    assert dict(schema.get("hnt_segment").options) == {"existing": 100000000, "new": 100000001,
                                                       "prospect": 100000002, "partner": 100000003}
    assert schema.get("hnt_segment").labels == ("Existing", "New", "Prospect", "Partner")
    assert schema.get("leadsourcecode").option_value("web") == 8


# --- faults, through the client's retries -----------------------------------------------------------


def test_a_short_throttle_is_waited_out(dataverse_side: DataverseHarness) -> None:
    dataverse_side.fail_next([throttled(1)])
    lead_id = new_id()
    dataverse_side.client.create_lead(lead_id, payload(1))
    [slept] = dataverse_side.sleeps
    assert 1 <= slept <= 1.5  # spread over the Retry-After
    assert record(dataverse_side, lead_id)["companyname"] == "c1"


def test_a_long_throttle_is_raised_with_its_retry_after(dataverse_side: DataverseHarness) -> None:
    dataverse_side.fail_next([throttled(30)])
    with pytest.raises(D365RateLimitError) as limited:
        dataverse_side.client.find_leads([("emailaddress1", "a@b.c")])
    error = limited.value
    assert (error.status, error.code, error.retry_after, error.transient) == (429, "0x80072322", 30.0, True)
    assert error.request_id
    assert dataverse_side.sleeps == []


def test_an_outage_is_retried_then_raised_as_transient(dataverse_side: DataverseHarness) -> None:
    dataverse_side.fail_next([unavailable(503)] * 3)
    lead_id = new_id()
    with pytest.raises(D365APIError) as down:
        dataverse_side.client.create_lead(lead_id, payload(1))
    assert (down.value.status, down.value.transient) == (503, True)
    assert down.value.request_id
    assert len(dataverse_side.sleeps) == 2
    assert dataverse_side.records() == []


def test_one_failed_answer_is_cured_by_a_retry(dataverse_side: DataverseHarness) -> None:
    dataverse_side.fail_next([unavailable(503), DROP_BEFORE])
    lead_id = new_id()
    dataverse_side.client.create_lead(lead_id, payload(1))
    assert len(dataverse_side.sleeps) == 2 and len(dataverse_side.records()) == 1


def test_a_connection_that_keeps_dropping_is_a_connection_error(dataverse_side: DataverseHarness) -> None:
    dataverse_side.fail_next([DROP_BEFORE] * 3)
    with pytest.raises(D365ConnectionError) as dropped:
        dataverse_side.client.get_lead_etag(new_id())
    assert dropped.value.transient and dropped.value.status is None
    assert dropped.value.earlier_attempt_unanswered


@pytest.mark.parametrize("status", [400, 403])
def test_a_refusal_is_permanent_and_not_retried(dataverse_side: DataverseHarness, status: int) -> None:
    dataverse_side.fail_next([Fault(status, "0x80040220", "Principal user is missing prvCreateLead privilege")])
    with pytest.raises(D365APIError) as refused:
        dataverse_side.client.create_lead(new_id(), payload(1))
    assert (refused.value.status, refused.value.code, refused.value.transient) == (status, "0x80040220", False)
    assert dataverse_side.sleeps == [] and dataverse_side.records() == []


def test_a_metadata_refusal_reaches_the_caller(dataverse_side: DataverseHarness) -> None:
    dataverse_side.fail_next([Fault(403, "0x80040220", "Principal user is missing prvReadEntity privilege")])
    with pytest.raises(D365APIError) as refused:
        dataverse_side.client.read_lead_schema()
    assert (refused.value.status, refused.value.transient) == (403, False)


def test_a_create_whose_answer_was_lost_meets_itself_on_the_retry(dataverse_side: DataverseHarness) -> None:
    dataverse_side.fail_next([COMMIT_THEN_DROP])
    lead_id = new_id()
    with pytest.raises(D365DuplicateError) as duplicate:
        dataverse_side.client.create_lead(lead_id, payload(1))
    assert duplicate.value.earlier_attempt_unanswered
    assert [r["leadid"] for r in dataverse_side.records()] == [lead_id]


def test_an_update_whose_answer_was_lost_meets_its_own_write_on_the_retry(dataverse_side: DataverseHarness) -> None:
    client, lead_id = dataverse_side.client, new_id()
    etag = client.create_lead(lead_id, payload(1))
    dataverse_side.fail_next([COMMIT_THEN_DROP])
    with pytest.raises(D365RecordChangedError) as changed:
        client.update_lead(lead_id, payload(1, companyname="landed"), etag=etag)
    assert changed.value.earlier_attempt_unanswered
    assert record(dataverse_side, lead_id)["companyname"] == "landed"
    assert client.get_lead_etag(lead_id) != etag

"""The bulk part of the Dataverse client's contract (issue 12), as the bulk writer uses it: the
same tests against `FakeDataverse` and `DataverseClient` talking to the Dataverse emulator."""
from __future__ import annotations

import uuid

import pytest

from d365.bulk import BulkTarget
from d365.errors import (
    D365APIError,
    D365DuplicateError,
    D365NotFoundError,
    D365RateLimitError,
    D365RecordChangedError,
)
from tests.contract.conftest import DataverseHarness
from tests.fakes.dataverse import guid_order
from tests.fakes.faults import COMMIT_THEN_DROP, throttled


def payload(n: int, **values) -> dict:
    return {"subject": f"Hunter: c{n}.example", "companyname": f"c{n}", "emailaddress1": f"it@c{n}.example",
            "websiteurl": f"https://c{n}.example", "hnt_companyid": n, **values}


def new_id() -> str:
    return str(uuid.uuid4())


def by_id(side: DataverseHarness) -> dict[str, dict]:
    return {r["leadid"]: r for r in side.records()}


def test_bulk_support_follows_the_org(dataverse_side: DataverseHarness) -> None:
    assert dataverse_side.client.bulk_support(refresh=True) is True
    dataverse_side.set_bulk_support(False)
    assert dataverse_side.client.bulk_support() is True  # remembered
    assert dataverse_side.client.bulk_support(refresh=True) is False


def test_upsert_multiple_creates_and_updates_by_id(dataverse_side: DataverseHarness) -> None:
    client, existing, fresh = dataverse_side.client, new_id(), new_id()
    client.create_lead(existing, payload(1))

    client.upsert_multiple([BulkTarget(existing, payload(1, companyname="renamed")), BulkTarget(fresh, payload(2))])

    records = by_id(dataverse_side)
    assert records[existing]["companyname"] == "renamed" and records[fresh]["companyname"] == "c2"
    assert len(records) == 2


def test_upsert_multiple_is_all_or_nothing_and_names_the_bad_target(dataverse_side: DataverseHarness) -> None:
    client, good, bad = dataverse_side.client, new_id(), new_id()
    dataverse_side.add_rule("hnt_provider", "Rejected", status=400, code="0x80040265", message="Plug-in says no")

    with pytest.raises(D365APIError) as refused:
        client.upsert_multiple([BulkTarget(good, payload(1)), BulkTarget(bad, payload(2, hnt_provider="Rejected"))])

    assert (refused.value.status, refused.value.code, refused.value.transient) == (400, "0x80040265", False)
    assert refused.value.failed_indexes == (1,)
    assert dataverse_side.records() == []


def test_upsert_multiple_refuses_one_record_named_twice(dataverse_side: DataverseHarness) -> None:
    lead_id = new_id()
    with pytest.raises(D365APIError) as refused:
        dataverse_side.client.upsert_multiple([BulkTarget(lead_id, payload(1)), BulkTarget(lead_id, payload(1))])
    assert refused.value.status == 400 and refused.value.failed_indexes == (1,)
    assert dataverse_side.records() == []


def test_upsert_multiple_where_the_org_lacks_it(dataverse_side: DataverseHarness) -> None:
    dataverse_side.set_bulk_support(False)
    with pytest.raises(D365APIError) as refused:
        dataverse_side.client.upsert_multiple([BulkTarget(new_id(), payload(1))])
    assert (refused.value.status, refused.value.code) == (400, "0x80040800")


def test_an_upsert_multiple_whose_answer_was_lost_is_applied_once(dataverse_side: DataverseHarness) -> None:
    lead_id = new_id()
    dataverse_side.fail_next([COMMIT_THEN_DROP])
    dataverse_side.client.upsert_multiple([BulkTarget(lead_id, payload(1))])  # the retry lands on the same record
    assert list(by_id(dataverse_side)) == [lead_id]


def test_a_throttled_upsert_multiple_writes_nothing(dataverse_side: DataverseHarness) -> None:
    dataverse_side.fail_next([throttled(30)])
    with pytest.raises(D365RateLimitError) as limited:
        dataverse_side.client.upsert_multiple([BulkTarget(new_id(), payload(1))])
    assert limited.value.status == 429 and dataverse_side.records() == []


def test_batch_write_answers_each_target_on_its_own(dataverse_side: DataverseHarness) -> None:
    client, updated, created, stale, refused = dataverse_side.client, new_id(), new_id(), new_id(), new_id()
    etag = client.create_lead(updated, payload(1))
    old_etag = client.create_lead(stale, payload(3))
    client.update_lead(stale, payload(3, companyname="edited in the CRM"))
    dataverse_side.add_rule("hnt_provider", "Rejected", status=400, code="0x80040265", message="Plug-in says no")

    results = client.batch_write([
        BulkTarget(updated, payload(1, companyname="renamed"), etag=etag),
        BulkTarget(created, payload(2)),
        BulkTarget(stale, payload(3, companyname="ours"), etag=old_etag),
        BulkTarget(refused, payload(4, hnt_provider="Rejected")),
    ])

    first, second, third, fourth = results
    assert (first.ok, first.lead_id, first.created) == (True, updated, False) and first.etag != etag
    assert (second.ok, second.lead_id, second.created) == (True, created, True)
    assert second.etag == client.get_lead_etag(created)
    assert isinstance(third.error, D365RecordChangedError) and third.error.status == 412
    assert isinstance(fourth.error, D365APIError) and (fourth.error.status, fourth.error.code) == (400, "0x80040265")
    records = by_id(dataverse_side)
    assert records[updated]["companyname"] == "renamed" and records[stale]["companyname"] == "edited in the CRM"
    assert refused not in records


def test_batch_write_at_an_etag_of_a_missing_record(dataverse_side: DataverseHarness) -> None:
    [result] = dataverse_side.client.batch_write([BulkTarget(new_id(), payload(1), etag='W/"1000001"')])
    assert isinstance(result.error, D365NotFoundError)
    assert dataverse_side.records() == []


def test_batch_write_that_takes_another_records_key_is_a_duplicate(keyed_dataverse_side: DataverseHarness) -> None:
    client, first, second = keyed_dataverse_side.client, new_id(), new_id()
    client.create_lead(first, payload(1, hnt_domain="c1.example"))
    [result] = client.batch_write([BulkTarget(second, payload(2, hnt_domain="C1.example"))])
    assert isinstance(result.error, D365DuplicateError) and result.error.code == "0x80060892"


def test_find_leads_in_any_matches_any_value_of_any_column(dataverse_side: DataverseHarness) -> None:
    client = dataverse_side.client
    ids = [new_id() for _ in range(4)]
    client.create_lead(ids[0], payload(1))
    client.create_lead(ids[1], payload(2, emailaddress1="Shared@MSP.example"))
    client.create_lead(ids[2], payload(3, websiteurl="https://THREE.example"))
    client.create_lead(ids[3], payload(4))

    found = client.find_leads_in_any({"emailaddress1": ["it@C1.example", "shared@msp.example"],
                                      "websiteurl": ["https://three.example"]},
                                     select=["hnt_companyid", "createdon"], page_size=2)

    assert sorted(r["leadid"] for r in found) == sorted(ids[:3])
    assert [r["leadid"] for r in found] == [r["leadid"] for r in
                                            sorted(found, key=lambda r: (r["createdon"], guid_order(r["leadid"])))]
    assert {r["hnt_companyid"] for r in found} == {1, 2, 3}
    assert client.find_leads_in_any({"emailaddress1": []}) == []

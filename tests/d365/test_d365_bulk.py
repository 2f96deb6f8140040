"""Bulk writes and lookups (issue 12) against the Dataverse emulator: UpsertMultiple, $batch, In."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from d365.auth import ManagedIdentityTokenProvider
from d365.bulk import BulkTarget
from d365.client import DataverseClient
from d365.errors import (
    D365APIError,
    D365NotFoundError,
    D365RateLimitError,
    D365RecordChangedError,
)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def emulator(dataverse):
    return dataverse("mvp", "hnt_domain")


@pytest.fixture
def client(emulator, msi) -> Iterator[DataverseClient]:
    client = DataverseClient(emulator.url, ManagedIdentityTokenProvider(f"{emulator.url}/.default"), sleep=Sleeps())
    client.whoami()  # token and connection ready: requests_sent counts from 1
    yield client
    client.close()


def _lead(domain: str, **extra) -> dict:
    return {"subject": f"Hunter: {domain}", "hnt_domain": domain, "emailaddress1": f"it@{domain}", **extra}


def _by_id(emulator) -> dict[str, dict]:
    return {record["leadid"]: record for record in emulator.leads()}


def _sent(client: DataverseClient) -> int:
    return client.requests_sent - 1


# --- bulk support --------------------------------------------------------------------------------


def test_bulk_support_is_asked_once(client: DataverseClient, emulator) -> None:
    assert client.bulk_support() is True
    assert client.bulk_support() is True
    assert _sent(client) == 2  # CreateMultiple and UpdateMultiple, then cached

    emulator.set_bulk_support(False)
    assert client.bulk_support() is True  # cached
    assert client.bulk_support(refresh=True) is False


# --- UpsertMultiple ------------------------------------------------------------------------------


def test_upsert_multiple_writes_new_and_existing_leads_in_one_request(client: DataverseClient, emulator) -> None:
    existing = str(uuid.uuid4())
    client.create_lead(existing, _lead("old.example"))
    new = [str(uuid.uuid4()) for _ in range(3)]
    targets = [BulkTarget(lead_id, _lead(f"n{n}.example")) for n, lead_id in enumerate(new)]
    targets.append(BulkTarget(existing, {"companyname": "Old Co"}))
    before = _sent(client)

    assert client.upsert_multiple(targets) is None

    assert _sent(client) == before + 1
    records = _by_id(emulator)
    assert set(records) == {existing, *new}
    assert records[existing]["companyname"] == "Old Co" and records[existing]["hnt_domain"] == "old.example"
    assert [records[lead_id]["hnt_domain"] for lead_id in new] == ["n0.example", "n1.example", "n2.example"]


def test_upsert_multiple_by_alternate_key_leaves_key_columns_out_of_the_body(client: DataverseClient, emulator) -> None:
    lead_id = str(uuid.uuid4())
    # The emulator, like Dataverse, fails the create path when the key is repeated in the body.
    client.upsert_multiple([BulkTarget(lead_id, _lead("key.example"), key={"hnt_domain": "key.example"})])
    client.upsert_multiple([BulkTarget(None, {"companyname": "Keyed"}, key={"hnt_domain": "KEY.example"})])

    [record] = emulator.leads()
    assert (record["leadid"], record["hnt_domain"], record["companyname"]) == (lead_id, "key.example", "Keyed")


def test_upsert_multiple_is_all_or_nothing_and_names_the_failing_target(client: DataverseClient, emulator) -> None:
    targets = [BulkTarget(str(uuid.uuid4()), _lead(f"{n}.example")) for n in range(3)]
    targets[1] = BulkTarget(targets[1].lead_id, _lead("bad.example", subject="x" * 301))

    with pytest.raises(D365APIError) as raised:
        client.upsert_multiple(targets)

    assert raised.value.status == 400 and raised.value.code == "0x80044331" and not raised.value.transient
    assert raised.value.failed_indexes == (1,)
    assert emulator.leads() == []


def test_upsert_multiple_without_bulk_support_fails_permanently(client: DataverseClient, emulator) -> None:
    emulator.set_bulk_support(False)
    with pytest.raises(D365APIError) as raised:
        client.upsert_multiple([BulkTarget(str(uuid.uuid4()), _lead("a.example"))])
    assert raised.value.status == 400 and not raised.value.transient
    assert emulator.leads() == []


def test_upsert_multiple_refuses_what_it_cannot_carry(client: DataverseClient) -> None:
    with pytest.raises(ValueError):
        client.upsert_multiple([])
    with pytest.raises(ValueError):
        client.upsert_multiple([BulkTarget(str(uuid.uuid4()), _lead("a.example"), etag='W/"1"')])
    with pytest.raises(ValueError):
        BulkTarget(None, _lead("a.example"))
    assert _sent(client) == 0


# --- $batch --------------------------------------------------------------------------------------


def test_batch_write_answers_per_target_and_writes_the_good_ones(client: DataverseClient, emulator) -> None:
    kept, edited = str(uuid.uuid4()), str(uuid.uuid4())
    kept_etag = client.create_lead(kept, _lead("kept.example"))
    stale_etag = client.create_lead(edited, _lead("edited.example"))
    client.update_lead(edited, {"companyname": "edited in the CRM"})
    new, bad = str(uuid.uuid4()), str(uuid.uuid4())
    targets = [
        BulkTarget(new, _lead("new.example")),
        BulkTarget(kept, {"companyname": "Kept"}, etag=kept_etag),
        BulkTarget(edited, {"companyname": "ours"}, etag=stale_etag),
        BulkTarget(bad, _lead("bad.example", subject="x" * 301)),
        BulkTarget(str(uuid.uuid4()), {"companyname": "gone"}, etag='W/"1"'),
    ]
    before = _sent(client)

    results = client.batch_write(targets)

    assert _sent(client) == before + 1
    assert [r.target for r in results] == targets
    assert [r.ok for r in results] == [True, True, False, False, False]
    assert (results[0].lead_id, results[0].created) == (new, True)
    assert (results[1].lead_id, results[1].created) == (kept, False)
    assert results[0].etag == client.get_lead_etag(new) and results[1].etag == client.get_lead_etag(kept)
    assert isinstance(results[2].error, D365RecordChangedError)
    assert isinstance(results[3].error, D365APIError) and results[3].error.code == "0x80044331"
    assert results[3].error.request_id  # the part's REQ_ID, for support
    assert isinstance(results[4].error, D365NotFoundError)
    records = _by_id(emulator)
    assert set(records) == {kept, edited, new}
    assert records[kept]["companyname"] == "Kept" and records[edited]["companyname"] == "edited in the CRM"


def test_batch_write_by_alternate_key(client: DataverseClient, emulator) -> None:
    lead_id = str(uuid.uuid4())
    [first] = client.batch_write([BulkTarget(lead_id, _lead("k.example"), key={"hnt_domain": "k.example"})])
    [second] = client.batch_write([BulkTarget(None, {"companyname": "K"}, key={"hnt_domain": "k.example"})])
    assert (first.lead_id, first.created, second.lead_id, second.created) == (lead_id, True, lead_id, False)
    [record] = emulator.leads()
    assert record["companyname"] == "K"


def test_a_throttled_batch_is_raised_whole(client: DataverseClient, emulator) -> None:
    emulator.set_faults(script=[{"status": 429, "retry_after": 30}])
    with pytest.raises(D365RateLimitError) as raised:
        client.batch_write([BulkTarget(str(uuid.uuid4()), _lead("a.example"))])
    assert raised.value.retry_after == 30
    assert emulator.leads() == []


def test_batch_dop_hint_is_recorded(client: DataverseClient) -> None:
    client.batch_write([BulkTarget(str(uuid.uuid4()), _lead("a.example"))])
    assert client.dop_hint is not None and client.dop_hint >= 1


# --- lookups with In -----------------------------------------------------------------------------


def test_find_leads_in_matches_many_values_case_insensitively(client: DataverseClient) -> None:
    hostile = ['o"brien@x.example', "o'neil@x.example", "a&b+c@x.example", "back\\slash@x.example", "ü@x.example"]
    ids = {}
    for value in hostile:
        ids[value] = str(uuid.uuid4())
        client.create_lead(ids[value], {"subject": "s", "emailaddress1": value, "hnt_companyid": 7})
    client.create_lead(str(uuid.uuid4()), {"subject": "s", "emailaddress1": "other@x.example"})
    before = _sent(client)

    found = client.find_leads_in_any(
        {"emailaddress1": [v.upper() for v in hostile] + ["nobody@x.example"]}, select=["hnt_companyid"]
    )

    assert _sent(client) == before + 1
    assert sorted(lead["leadid"] for lead in found) == sorted(ids.values())
    assert {lead["emailaddress1"] for lead in found} == set(hostile)
    assert all(lead["hnt_companyid"] == 7 and lead["@odata.etag"] for lead in found)


def test_find_leads_in_any_column_follows_pages(client: DataverseClient, emulator) -> None:
    targets = [
        BulkTarget(
            str(uuid.uuid4()), {"subject": "s", "emailaddress1": f"p{n}@x.example", "websiteurl": f"https://w{n}"}
        )
        for n in range(12)
    ]
    client.upsert_multiple(targets)
    emails = [f"p{n}@x.example" for n in range(0, 12, 2)]
    sites = [f"https://w{n}" for n in range(1, 12, 2)] + ["https://w0"]  # w0 also matches by email
    before = _sent(client)

    found = client.find_leads_in_any({"emailaddress1": emails, "websiteurl": sites}, page_size=5)

    assert _sent(client) == before + 3  # 12 leads in pages of 5
    assert sorted(lead["leadid"] for lead in found) == sorted(t.lead_id for t in targets)
    assert len(found) == len({lead["leadid"] for lead in found})


def test_find_leads_in_with_nothing_sends_nothing(client: DataverseClient) -> None:
    assert client.find_leads_in_any({"emailaddress1": []}) == []
    assert client.find_leads_in_any({"emailaddress1": [], "websiteurl": []}) == []
    assert _sent(client) == 0

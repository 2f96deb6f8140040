"""DataverseClient against the Dataverse emulator, with tokens from the managed-identity emulator."""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from d365.auth import ManagedIdentityTokenProvider
from d365.client import DataverseClient
from d365.errors import (
    D365APIError,
    D365AuthenticationError,
    D365ConnectionError,
    D365DuplicateError,
    D365NotFoundError,
    D365RateLimitError,
)
from d365.schema_cache import SchemaCache


class Sleeps(list):
    """Records each sleep instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FirstTokenStale:
    """A real provider whose first token is one Dataverse rejects, as after a key rotation."""

    def __init__(self, inner: ManagedIdentityTokenProvider, *, always: bool = False) -> None:
        self.inner = inner
        self.always = always
        self.stale = True
        self.invalidations = 0

    def get_token(self) -> str:
        return "stale.token.value" if self.stale or self.always else self.inner.get_token()

    def invalidate(self) -> None:
        self.invalidations += 1
        self.stale = False
        self.inner.invalidate()


@pytest.fixture
def emulator(dataverse):
    return dataverse("mvp", "hnt_domain")


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(emulator, msi, sleeps) -> Iterator[DataverseClient]:
    client = DataverseClient(emulator.url, ManagedIdentityTokenProvider(f"{emulator.url}/.default"), sleep=sleeps)
    yield client
    client.close()


def _lead_payload(domain: str, email: str) -> dict:
    return {"subject": f"Hunter: {domain}", "hnt_domain": domain, "emailaddress1": email}


def _records(emulator) -> list[dict]:
    return emulator.leads()


def test_whoami(client: DataverseClient) -> None:
    me = client.whoami()
    assert uuid.UUID(me["UserId"]) and uuid.UUID(me["OrganizationId"])


def test_create_update_get(client: DataverseClient, emulator) -> None:
    lead_id = str(uuid.uuid4())

    client.create_lead(lead_id, _lead_payload("a.com", "it@a.com"))
    client.update_lead(lead_id, {"companyname": "A"})

    lead = client.get_lead(lead_id, select=["companyname", "hnt_domain"])
    assert (lead["leadid"], lead["companyname"], lead["hnt_domain"]) == (lead_id, "A", "a.com")
    [record] = _records(emulator)
    assert record["leadid"] == lead_id and record["companyname"] == "A"


def test_create_of_existing_lead_is_a_duplicate(client: DataverseClient, emulator) -> None:
    lead_id = str(uuid.uuid4())
    client.create_lead(lead_id, _lead_payload("a.com", "it@a.com"))
    with pytest.raises(D365DuplicateError) as raised:
        client.create_lead(lead_id, _lead_payload("a.com", "it@a.com"))
    assert raised.value.status == 412 and not raised.value.transient
    assert len(_records(emulator)) == 1


def test_update_and_get_of_missing_lead_are_not_found(client: DataverseClient, emulator) -> None:
    lead_id = str(uuid.uuid4())
    with pytest.raises(D365NotFoundError):
        client.update_lead(lead_id, {"companyname": "A"})
    with pytest.raises(D365NotFoundError):
        client.get_lead(lead_id)
    assert _records(emulator) == []


def test_upsert_by_key_returns_the_same_lead_id(client: DataverseClient, emulator) -> None:
    domain = "o'brien.example"

    first = client.upsert_lead_by_key({"hnt_domain": domain}, _lead_payload(domain, "a@x.com"))
    second = client.upsert_lead_by_key({"hnt_domain": domain}, {"companyname": "OB", "hnt_domain": domain})

    assert first == second
    [record] = _records(emulator)
    assert (record["leadid"], record["hnt_domain"], record["companyname"]) == (first, domain, "OB")


@pytest.mark.parametrize("hostile", ["o'brien@x.com", "' or 1 eq 1", "%27", "a&b@x.com", "a+b@x.com", "a#b?c/d@x.com"])
def test_find_leads_with_hostile_values(client: DataverseClient, hostile: str) -> None:
    lead_id = str(uuid.uuid4())
    client.create_lead(lead_id, _lead_payload("a.com", hostile))
    client.create_lead(str(uuid.uuid4()), _lead_payload("b.com", "other@b.com"))

    found = client.find_leads([("emailaddress1", hostile.upper()), ("websiteurl", "https://nowhere")])

    assert [lead["leadid"] for lead in found] == [lead_id]
    assert found[0]["emailaddress1"] == hostile


def test_find_leads_never_widens_the_filter(client: DataverseClient) -> None:
    client.create_lead(str(uuid.uuid4()), _lead_payload("a.com", "it@a.com"))
    assert client.find_leads([("emailaddress1", "' or 1 eq 1 or emailaddress1 eq '")]) == []


def test_find_leads_without_matches_sends_nothing(client: DataverseClient, emulator) -> None:
    before = emulator.stats()["requests"]
    assert client.find_leads([]) == []
    assert client.requests_sent == 0 and emulator.stats()["requests"] == before


def test_short_429_is_waited_out_inline(client: DataverseClient, emulator, sleeps: Sleeps) -> None:
    emulator.set_faults(script=[{"status": 429, "retry_after": 1}])
    client.create_lead(str(uuid.uuid4()), _lead_payload("a.com", "it@a.com"))
    assert sleeps == [1.0]
    assert client.requests_sent == 2 and len(_records(emulator)) == 1


def test_long_429_is_raised_for_the_caller_to_defer(client: DataverseClient, emulator, sleeps: Sleeps) -> None:
    emulator.set_faults(script=[{"status": 429, "retry_after": 30}])
    with pytest.raises(D365RateLimitError) as raised:
        client.create_lead(str(uuid.uuid4()), _lead_payload("a.com", "it@a.com"))
    assert raised.value.retry_after == 30 and raised.value.transient
    assert raised.value.code == "0x80072322"
    assert sleeps == [] and _records(emulator) == []


def test_repeated_429s_stop_at_the_inline_budget(client: DataverseClient, emulator, sleeps: Sleeps) -> None:
    emulator.set_faults(script=[{"status": 429, "retry_after": 4}] * 3)
    with pytest.raises(D365RateLimitError):
        client.whoami()
    assert sleeps == [4.0, 4.0]  # a third wait would pass twice the inline limit


def test_503_is_retried_with_backoff(client: DataverseClient, emulator, sleeps: Sleeps) -> None:
    emulator.set_faults(script=[{"status": 503}, {"status": 503}])
    client.create_lead(str(uuid.uuid4()), _lead_payload("a.com", "it@a.com"))
    assert len(sleeps) == 2 and sleeps[0] < sleeps[1] < 1
    assert len(_records(emulator)) == 1


def test_503_beyond_max_retries_raises_transient(client: DataverseClient, emulator) -> None:
    emulator.set_faults(script=[{"status": 503}] * 3)
    with pytest.raises(D365APIError) as raised:
        client.whoami()
    assert raised.value.status == 503 and raised.value.transient
    assert client.requests_sent == 3


def test_dropped_connection_is_retried(client: DataverseClient, emulator) -> None:
    emulator.set_faults(script=[{"drop": "before"}])
    lead_id = str(uuid.uuid4())
    client.create_lead(lead_id, _lead_payload("a.com", "it@a.com"))
    assert [r["leadid"] for r in _records(emulator)] == [lead_id]


def test_dropped_connection_beyond_retries_is_a_connection_error(emulator, msi) -> None:
    client = DataverseClient(
        emulator.url, ManagedIdentityTokenProvider(f"{emulator.url}/.default"), max_retries=0
    )
    emulator.set_faults(script=[{"drop": "before"}])
    with pytest.raises(D365ConnectionError) as raised:
        client.find_leads([("emailaddress1", "secret@contact.com")])
    assert raised.value.transient
    assert "secret@contact.com" not in str(raised.value)


def test_create_dropped_after_commit_reads_as_duplicate_not_a_second_record(client: DataverseClient, emulator) -> None:
    emulator.set_faults(script=[{"drop": "after_commit"}])
    lead_id = str(uuid.uuid4())
    with pytest.raises(D365DuplicateError):
        client.create_lead(lead_id, _lead_payload("a.com", "it@a.com"))
    assert [r["leadid"] for r in _records(emulator)] == [lead_id]


def test_upsert_dropped_after_commit_is_retried_safely(client: DataverseClient, emulator) -> None:
    emulator.set_faults(script=[{"drop": "after_commit"}])
    lead_id = client.upsert_lead_by_key({"hnt_domain": "a.com"}, _lead_payload("a.com", "it@a.com"))
    assert [r["leadid"] for r in _records(emulator)] == [lead_id]


def test_401_refreshes_the_token_once(emulator, msi) -> None:
    tokens = FirstTokenStale(ManagedIdentityTokenProvider(f"{emulator.url}/.default"))
    client = DataverseClient(emulator.url, tokens)
    assert client.whoami()["UserId"]
    assert tokens.invalidations == 1 and client.requests_sent == 2


def test_401_after_a_fresh_token_is_an_authentication_error(emulator, msi) -> None:
    tokens = FirstTokenStale(ManagedIdentityTokenProvider(f"{emulator.url}/.default"), always=True)
    client = DataverseClient(emulator.url, tokens)
    with pytest.raises(D365AuthenticationError) as raised:
        client.whoami()
    assert raised.value.status == 401 and not raised.value.transient
    assert tokens.invalidations == 1 and client.requests_sent == 2


def test_token_for_another_resource_is_rejected(emulator, msi) -> None:
    client = DataverseClient(emulator.url, ManagedIdentityTokenProvider("https://other.crm.dynamics.com/.default"))
    with pytest.raises(D365AuthenticationError):
        client.whoami()


def test_read_lead_schema_in_four_requests(client: DataverseClient) -> None:
    schema = client.read_lead_schema()

    assert client.requests_sent == 4
    assert schema.get("subject").max_length == 300
    assert schema.get("hnt_infrasummary").attribute_type == "Memo"
    assert schema.get("hnt_companyid").attribute_type == "Integer"
    assert schema.get("hnt_huntertenantsize").option_value("medium") == 100000001
    assert not schema.has("hnt_prioritycategory")


def test_schema_cache_picks_up_an_option_added_at_run_time(client: DataverseClient, emulator) -> None:
    cache = SchemaCache(client.read_lead_schema, ttl_seconds=3600)
    assert cache.get().get("hnt_segment").option_value("Reseller") is None

    emulator.control("POST", "schema/columns/hnt_segment/options", json={"value": 100000009, "label": "Reseller"})
    assert cache.get().get("hnt_segment").option_value("Reseller") is None  # still cached
    cache.invalidate()

    assert cache.get().get("hnt_segment").option_value("reseller") == 100000009
    assert cache.loads == 2

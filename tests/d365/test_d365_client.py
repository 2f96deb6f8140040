"""DataverseClient against the Dataverse emulator, with tokens from the managed-identity emulator."""
from __future__ import annotations

import logging
import uuid
from typing import Iterator

import pytest
import requests

from d365.auth import ManagedIdentityTokenProvider
from d365.client import DataverseClient
from d365.deadline import deadline
from d365.errors import (
    D365APIError,
    D365AuthenticationError,
    D365ConnectionError,
    D365DeadlineExceededError,
    D365DuplicateError,
    D365NotFoundError,
    D365RateLimitError,
    D365RecordChangedError,
)
from d365.schema_cache import SchemaCache
from d365.throttle import GROWTH_ANSWERS, ConcurrencyLimit, ThrottleGate
from tests.d365.sleeping_clock import Clock


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

    first, first_etag, created = client.upsert_lead_by_key({"hnt_domain": domain}, _lead_payload(domain, "a@x.com"))
    second, second_etag, created_again = client.upsert_lead_by_key(
        {"hnt_domain": domain}, {"companyname": "OB", "hnt_domain": domain}
    )

    assert first == second
    assert (created, created_again) == (True, False)  # 201, then 200
    assert first_etag != second_etag and client.get_lead_etag(first) == second_etag
    [record] = _records(emulator)
    assert (record["leadid"], record["hnt_domain"], record["companyname"]) == (first, domain, "OB")


def test_writes_return_the_etag_and_an_update_at_it_succeeds(client: DataverseClient, emulator) -> None:
    lead_id = str(uuid.uuid4())

    created = client.create_lead(lead_id, _lead_payload("a.com", "it@a.com"))
    assert client.get_lead_etag(lead_id) == created
    updated = client.update_lead(lead_id, {"companyname": "A"}, etag=created)

    assert updated != created and client.get_lead_etag(lead_id) == updated
    assert client.get_lead(lead_id)["@odata.etag"] == updated
    assert _records(emulator)[0]["companyname"] == "A"


def test_update_at_a_stale_etag_is_a_record_changed_error(client: DataverseClient, emulator) -> None:
    lead_id = str(uuid.uuid4())
    ours = client.create_lead(lead_id, _lead_payload("a.com", "it@a.com"))
    client.update_lead(lead_id, {"companyname": "edited in the CRM"})  # If-Match: *, as before

    with pytest.raises(D365RecordChangedError) as raised:
        client.update_lead(lead_id, {"companyname": "ours"}, etag=ours)

    assert raised.value.status == 412 and not raised.value.transient
    assert not raised.value.earlier_attempt_unanswered
    assert _records(emulator)[0]["companyname"] == "edited in the CRM"


def test_update_with_an_etag_of_a_missing_lead_is_not_found(client: DataverseClient) -> None:
    with pytest.raises(D365NotFoundError):
        client.update_lead(str(uuid.uuid4()), {"companyname": "A"}, etag='W/"1"')
    with pytest.raises(D365NotFoundError):
        client.get_lead_etag(str(uuid.uuid4()))


def test_update_dropped_after_commit_says_its_412_may_be_its_own(client: DataverseClient, emulator) -> None:
    lead_id = str(uuid.uuid4())
    etag = client.create_lead(lead_id, _lead_payload("a.com", "it@a.com"))
    emulator.set_faults(script=[{"drop": "after_commit"}])

    with pytest.raises(D365RecordChangedError) as raised:
        client.update_lead(lead_id, {"companyname": "A"}, etag=etag)

    assert raised.value.earlier_attempt_unanswered  # the first attempt landed; the retry met its own write
    assert _records(emulator)[0]["companyname"] == "A"


class RecordingSession(requests.Session):
    """A real session that remembers the URLs it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs):  # type: ignore[override]
        self.urls.append(request.url or "")
        return super().send(request, **kwargs)


def test_find_leads_in_a_stable_order_with_extra_columns(emulator, msi) -> None:
    session = RecordingSession()
    client = DataverseClient(emulator.url, ManagedIdentityTokenProvider(f"{emulator.url}/.default"), session=session)
    # Created in this order, each id lower than the one before: creation order is the reverse of
    # leadid order, so only $orderby can put them in (createdon, leadid) order.
    ids = [f"{digit * 8}-0000-4000-8000-000000000001" for digit in "fc9630"]
    for n, lead_id in enumerate(ids):
        client.create_lead(lead_id, {**_lead_payload(f"{n}.com", "shared@msp.example"), "hnt_companyid": n})

    found = client.find_leads([("emailaddress1", "SHARED@msp.example")], select=["hnt_companyid", "createdon"], top=10)

    assert "$orderby=createdon%20asc,leadid%20asc" in session.urls[-1]
    assert sorted(lead["leadid"] for lead in found) == sorted(ids)
    assert [lead["leadid"] for lead in found] == [
        lead["leadid"] for lead in sorted(found, key=lambda lead: (lead["createdon"], lead["leadid"]))
    ]
    assert all(lead["@odata.etag"] and lead["hnt_companyid"] == ids.index(lead["leadid"]) for lead in found)


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
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 1.5  # spread over the Retry-After
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
    assert len(sleeps) == 2 and all(4.0 <= s <= 6.0 for s in sleeps)  # a third would pass twice the inline limit


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
    lead_id, _, created = client.upsert_lead_by_key({"hnt_domain": "a.com"}, _lead_payload("a.com", "it@a.com"))
    assert [r["leadid"] for r in _records(emulator)] == [lead_id]
    assert not created  # the retry found the record its first attempt had made


def test_401_refreshes_the_token_once(emulator, msi) -> None:
    tokens = FirstTokenStale(ManagedIdentityTokenProvider(f"{emulator.url}/.default"))
    client = DataverseClient(emulator.url, tokens)
    assert client.whoami()["UserId"]
    assert tokens.invalidations == 1 and client.requests_sent == 2


def test_401_after_a_fresh_token_is_a_transient_authentication_error(emulator, msi) -> None:
    tokens = FirstTokenStale(ManagedIdentityTokenProvider(f"{emulator.url}/.default"), always=True)
    client = DataverseClient(emulator.url, tokens)
    with pytest.raises(D365AuthenticationError) as raised:
        client.whoami()
    assert raised.value.status == 401 and raised.value.transient  # a later token may be accepted
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


def test_failed_request_is_logged_with_its_service_request_id(
    client: DataverseClient, emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(script=[{"status": 503}] * 3)
    with caplog.at_level(logging.INFO, logger="d365"), pytest.raises(D365APIError) as raised:
        client.find_leads([("emailaddress1", "secret@contact.com")])

    [record] = [r for r in caplog.records if r.getMessage().startswith("d365_request_failed")]
    assert record.http_status == 503 and record.kind == "find_leads"
    assert record.service_request_id == raised.value.request_id
    assert "secret@contact.com" not in caplog.text


def test_dop_hint_is_recorded(client: DataverseClient) -> None:
    assert client.dop_hint is None
    client.whoami()
    assert client.dop_hint is not None and client.dop_hint >= 1


# --- deadline ------------------------------------------------------------------------------------


def test_nothing_is_sent_after_the_deadline(client: DataverseClient, emulator) -> None:
    before = emulator.stats()["requests"]
    with deadline(0), pytest.raises(D365DeadlineExceededError) as raised:
        client.create_lead(str(uuid.uuid4()), _lead_payload("a.com", "it@a.com"))
    assert raised.value.transient
    assert client.requests_sent == 0 and emulator.stats()["requests"] == before
    assert _records(emulator) == []


def test_a_429_wait_that_does_not_fit_the_deadline_is_not_waited(
    client: DataverseClient, emulator, sleeps: Sleeps
) -> None:
    emulator.set_faults(script=[{"status": 429, "retry_after": 3}])  # within the 5 s inline limit
    with deadline(2), pytest.raises(D365RateLimitError) as raised:
        client.whoami()
    assert raised.value.retry_after == 3
    assert sleeps == [] and client.requests_sent == 1


def test_a_backoff_that_does_not_fit_the_deadline_is_not_waited(
    client: DataverseClient, emulator, sleeps: Sleeps
) -> None:
    emulator.set_faults(script=[{"status": 503}])
    with deadline(0.05), pytest.raises(D365APIError) as raised:  # the first back-off is ~0.1 s
        client.whoami()
    assert raised.value.status == 503 and raised.value.transient
    assert sleeps == [] and client.requests_sent == 1


def test_within_the_deadline_retries_go_on(client: DataverseClient, emulator, sleeps: Sleeps) -> None:
    emulator.set_faults(script=[{"status": 503}, {"status": 429, "retry_after": 1}])
    with deadline(30):
        assert client.whoami()["UserId"]
    assert len(sleeps) == 2 and client.requests_sent == 3


def test_the_read_timeout_is_cut_to_the_deadline(emulator, msi) -> None:
    client = DataverseClient(emulator.url, ManagedIdentityTokenProvider(f"{emulator.url}/.default"), timeout=30)
    client.whoami()  # token and connection ready
    emulator.set_faults(latency_ms=3000)
    with deadline(0.5), pytest.raises(D365ConnectionError) as raised:
        client.whoami()  # answered after 3 s; the 30 s read timeout alone would have waited for it
    assert "Timeout" in str(raised.value)
    assert client.requests_sent == 2  # no retry: nothing is left of the deadline


# --- shared throttle -----------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _gated_client(emulator, clock: Clock, published: list[float]) -> DataverseClient:
    gate = ThrottleGate(inline_wait_seconds=5, publish=published.append, clock=clock, sleep=clock.sleep)
    return DataverseClient(
        emulator.url, ManagedIdentityTokenProvider(f"{emulator.url}/.default"), sleep=clock.sleep, throttle=gate
    )


def test_a_long_429_holds_back_every_later_request_without_sending(emulator, msi, clock: Clock) -> None:
    published: list[float] = []
    client = _gated_client(emulator, clock, published)
    emulator.set_faults(script=[{"status": 429, "retry_after": 30}])

    with pytest.raises(D365RateLimitError):
        client.whoami()
    assert published == [clock.now + 30]
    sent = client.requests_sent

    with pytest.raises(D365RateLimitError) as raised:
        client.find_leads([("emailaddress1", "it@a.com")])
    assert raised.value.retry_after == 30
    assert client.requests_sent == sent  # refused before sending

    clock.now += 30
    assert client.whoami()["UserId"]


def test_a_short_429_is_waited_once_and_published(emulator, msi, clock: Clock) -> None:
    published: list[float] = []
    client = _gated_client(emulator, clock, published)
    emulator.set_faults(script=[{"status": 429, "retry_after": 2}])
    start = clock.now

    assert client.whoami()["UserId"]

    assert len(clock.slept) == 1 and 2.0 <= clock.slept[0] <= 3.0 and published == [start + 2]
    assert client.requests_sent == 2


def test_a_throttle_learnt_elsewhere_is_honoured(emulator, msi, clock: Clock) -> None:
    published: list[float] = []
    client = _gated_client(emulator, clock, published)
    assert client.throttle is not None

    client.throttle.merge(clock.now + 3)  # short: waited inline (plus a spread within the inline wait), then sent
    assert client.whoami()["UserId"]
    assert len(clock.slept) == 1 and 3.0 <= clock.slept[0] <= 5.0 and client.requests_sent == 1

    client.throttle.merge(clock.now + 60)  # long: refused without sending
    with pytest.raises(D365RateLimitError) as raised:
        client.whoami()
    assert raised.value.retry_after == 60 and client.requests_sent == 1
    assert published == []


def test_waiters_resume_spread_over_the_retry_after_not_at_one_instant(clock: Clock) -> None:
    waits: list[float] = []  # twenty requests waiting at the same moment: the clock does not move
    gate = ThrottleGate(inline_wait_seconds=5, clock=clock, sleep=waits.append)
    gate.on_rate_limited(2)

    for _ in range(20):
        gate.before_request()

    assert all(2.0 <= wait <= 4.0 for wait in waits)
    assert len({round(wait, 3) for wait in waits}) > 10


def test_the_shared_throttle_is_read_at_most_once_a_second(clock: Clock) -> None:
    reads: list[float] = []

    def refresh() -> tuple[float, None]:
        reads.append(clock.now)
        return clock.now - 1, None  # in the past: not throttled; no concurrency cut

    gate = ThrottleGate(inline_wait_seconds=5, refresh=refresh, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        gate.before_request()
    clock.now += 1.5
    gate.before_request()

    assert len(reads) == 2 and clock.slept == []


def test_a_concurrency_429_halves_the_requests_sent_at_once_and_answers_grow_them_back() -> None:
    limit = ConcurrencyLimit(8, clock=lambda: 0.0)
    assert limit.acquire(timeout=0)
    limit.release(too_many=True)
    assert limit.limit == 4
    limit_after_cut = limit.limit
    assert limit.acquire(timeout=0)
    limit.release(too_many=True)  # within the same second: one cut only
    assert limit.limit == limit_after_cut

    for _ in range(GROWTH_ANSWERS * 4):
        assert limit.acquire(timeout=0)
        limit.release(too_many=False)
    assert limit.limit == 5

    held = [limit.acquire(timeout=0) for _ in range(6)]
    assert held == [True] * 5 + [False]  # a sixth waits for a free slot


def test_a_concurrency_cut_elsewhere_halves_this_process_too(clock: Clock) -> None:
    cuts: list[float] = []
    gate = ThrottleGate(inline_wait_seconds=5, refresh=lambda: (None, clock.now), clock=clock, sleep=clock.sleep)
    other = ThrottleGate(inline_wait_seconds=5, publish_cut=cuts.append, clock=clock, sleep=clock.sleep)

    other.on_concurrency_limited()  # another instance met Dataverse's concurrency limit, and published it
    gate.before_request()  # this one reads it before its next request

    assert cuts == [clock.now] and other.concurrency.limit == 26 and gate.concurrency.limit == 26

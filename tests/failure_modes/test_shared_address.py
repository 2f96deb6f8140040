"""Issue 8: two Hunter companies sharing one contact address never become one Dataverse lead.

Through the local host, in an org with the hnt_companyid column ("mvp") and one without it
("bare", where only the deterministic id and the store's unique d365_lead_id tell companies apart).
"""

from __future__ import annotations

import threading

import pytest

from shared.writes.lead_writer import deterministic_lead_id
from tests.app.helpers import lead
from tests.failure_modes.support import fresh, post, wait_statuses

SHARED = "info@msp-shared.example"  # a managed-service provider's address on several customers


def _post_both(host, first: dict, second: dict, how: str) -> None:
    if how == "one_after_the_other":
        assert post(host, first).status_code == 202
        wait_statuses(host.env["DATABASE_URL"], {first["company_id"]: "synced"})
        assert post(host, second).status_code == 202
    elif how == "one_call":
        assert post(host, {"leads": [first, second]}).status_code == 202
    else:  # two parallel calls
        answers: list[int] = []
        threads = [
            threading.Thread(target=lambda one=one: answers.append(post(host, one).status_code))
            for one in (first, second)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [202, 202]


def _records_by_company(emulator, rows: dict[int, dict]) -> dict[int, dict]:
    by_id = {r["leadid"]: r for r in emulator.leads()}
    ids = {c: row["d365_lead_id"] for c, row in rows.items()}
    assert None not in ids.values() and len(set(ids.values())) == len(ids), f"each company its own record: {ids}"
    return {c: by_id[str(lead_id)] for c, lead_id in ids.items()}


HOW = ["one_after_the_other", "one_call", "parallel_calls"]


@pytest.mark.parametrize("profile", ["mvp", "bare"])
@pytest.mark.parametrize("how", HOW)
def test_two_companies_with_one_contact_address_get_two_records(
    app_env, dataverse, local_host, database_url, profile, how
):
    base = 8100 + 10 * HOW.index(how) + (0 if profile == "mvp" else 5)
    a, b = base, base + 1
    fresh(database_url, a, b)
    emulator = dataverse(profile)
    host = local_host(app_env(emulator))

    _post_both(host, lead(a, contact_emails=[SHARED]), lead(b, contact_emails=[SHARED]), how)

    rows = wait_statuses(database_url, {a: "synced", b: "synced"})
    assert len(emulator.leads()) == 2, "two companies, two Dataverse records"
    records = _records_by_company(emulator, rows)
    for company_id, record in records.items():
        assert record["companyname"] == f"company{company_id}"
        assert record["emailaddress1"] == SHARED
        assert record["leadid"] == deterministic_lead_id(company_id)
        if profile == "mvp":
            assert record["hnt_companyid"] == company_id
        else:
            assert "hnt_companyid" not in record


@pytest.mark.parametrize("profile", ["mvp", "bare"])
@pytest.mark.parametrize("how", HOW)
def test_a_hand_made_record_with_that_address_is_adopted_by_exactly_one_company(
    app_env, dataverse, local_host, database_url, profile, how
):
    base = 8200 + 10 * HOW.index(how) + (0 if profile == "mvp" else 5)
    a, b = base, base + 1
    fresh(database_url, a, b)
    emulator = dataverse(profile)
    by_hand = emulator.create_lead(
        subject="MSP customer, entered by a salesperson", companyname="Some MSP", emailaddress1=SHARED
    )["leadid"]
    host = local_host(app_env(emulator))

    _post_both(host, lead(a, contact_emails=[SHARED]), lead(b, contact_emails=[SHARED]), how)

    rows = wait_statuses(database_url, {a: "synced", b: "synced"})
    records = _records_by_company(emulator, rows)
    adopters = [c for c, record in records.items() if record["leadid"] == by_hand]
    assert len(adopters) == 1, f"exactly one company adopts the hand-made record {by_hand}: {records}"
    other = ({a, b} - set(adopters)).pop()
    assert records[other]["leadid"] == deterministic_lead_id(other)
    assert len(emulator.leads()) == 2, "the hand-made record plus one new record"
    for company_id, record in records.items():
        assert record["companyname"] == f"company{company_id}"
        if profile == "mvp":
            assert record["hnt_companyid"] == company_id
    if how == "one_after_the_other":
        assert adopters == [a], "the first company posted adopts it"


@pytest.mark.parametrize("profile", ["mvp", "bare"])
def test_many_companies_racing_for_one_hand_made_record_one_adopts_it(
    app_env, dataverse, local_host, database_url, profile
):
    ids = list(range(8250, 8262)) if profile == "mvp" else list(range(8262, 8274))
    fresh(database_url, *ids)
    emulator = dataverse(profile)
    emulator.set_faults(latency_ms=30)  # lookups and writes overlap
    by_hand = emulator.create_lead(subject="entered by a salesperson", emailaddress1=SHARED)["leadid"]
    host = local_host(app_env(emulator))
    chunks = [ids[i : i + 4] for i in range(0, len(ids), 4)]
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda ch=ch: answers.append(
                post(host, {"leads": [lead(c, contact_emails=[SHARED]) for c in ch]}).status_code
            )
        )
        for ch in chunks
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [202] * len(chunks)

    rows = wait_statuses(database_url, dict.fromkeys(ids, "synced"))
    records = _records_by_company(emulator, rows)
    assert len(emulator.leads()) == len(ids)
    adopters = [c for c, r in records.items() if r["leadid"] == by_hand]
    assert len(adopters) == 1, f"exactly one company adopts the hand-made record: {adopters}"
    assert all(r["companyname"] == f"company{c}" for c, r in records.items())

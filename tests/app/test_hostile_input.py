"""Hostile values and generated requests against the running host."""
from __future__ import annotations

import itertools
import json

import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from shared.intake import sign
from tests.app.helpers import lead, post_leads, sync_rows, wait_for
from tests.conftest import WEBHOOK_SECRET

METACHARACTERS = "o'brien&co/#%27+?"


def _synced(database_url: str, ids: list[int]) -> bool:
    rows = sync_rows(database_url, ids)
    return len(rows) == len(ids) and all(r["status"] == "synced" for r in rows.values())


def test_quotes_and_metacharacters_arrive_unchanged_and_never_alter_the_lookup(
        app_env, dataverse, local_host, database_url):
    emulator = dataverse("mvp")
    host = local_host(app_env(emulator))
    email = f"{METACHARACTERS}@company5001.example"
    name = "' or 1 eq 1 -- %27 & / # ?"

    # a lead full of metacharacters
    assert post_leads(host.url, lead(5001, contact_emails=[email], canonical_name=name),
                      secret=WEBHOOK_SECRET).status_code == 202
    wait_for(lambda: _synced(database_url, [5001]), what="5001 synced")
    [record] = emulator.leads()
    assert record["emailaddress1"] == email and record["companyname"] == name

    # an address crafted to widen an unescaped $filter to every lead: it must match nothing
    injection = "x' or emailaddress1 ne '@company5002.example"
    assert post_leads(host.url, lead(5002, contact_emails=[injection]), secret=WEBHOOK_SECRET).status_code in (202, 400)
    # another company with the first one's address, differently cased: the lookup finds that record,
    # which belongs to company 5001, so 5003 gets a record of its own and 5001's is left as it was
    assert post_leads(host.url, lead(5003, contact_emails=[email.upper().replace("@COMPANY5001.EXAMPLE", "@company5001.example")]),
                      secret=WEBHOOK_SECRET).status_code == 202
    wait_for(lambda: _synced(database_url, [5003]), what="5003 synced")

    rows = sync_rows(database_url, [5001, 5002, 5003])
    assert str(rows[5003]["d365_lead_id"]) != record["leadid"]
    if 5002 in rows:
        wait_for(lambda: _synced(database_url, [5002]), what="5002 synced")
        assert str(sync_rows(database_url, [5002])[5002]["d365_lead_id"]) != record["leadid"]
    by_id = {r["leadid"]: r for r in emulator.leads()}
    assert by_id[record["leadid"]]["emailaddress1"] == email and by_id[record["leadid"]]["hnt_companyid"] == 5001


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
LEAD_FIELDS = list(lead(1).keys())


def test_generated_requests_never_crash_leak_or_enqueue_when_refused(app_env, dataverse, local_host, database_url):
    host = local_host(app_env(dataverse("mvp")))
    ids = itertools.count(900_000)
    accepted: set[int] = set()
    refused: set[int] = set()
    session = requests.Session()

    @st.composite
    def bodies(draw):
        kind = draw(st.sampled_from(["mutated lead", "batch", "any json", "bytes"]))
        if kind == "bytes":
            return draw(st.binary(max_size=200)), []
        if kind == "any json":
            return json.dumps(draw(json_values)).encode(), []
        leads = []
        for _ in range(draw(st.integers(1, 3)) if kind == "batch" else 1):
            company_id = next(ids)
            candidate = lead(company_id)
            for field in draw(st.lists(st.sampled_from(LEAD_FIELDS), max_size=3)):
                if field != "company_id":
                    candidate[field] = draw(json_values)
            leads.append(candidate)
        body = {"leads": leads} if kind == "batch" else leads[0]
        return json.dumps(body).encode(), [l["company_id"] for l in leads]

    @settings(max_examples=1500, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(bodies(), st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]),
           st.booleans())
    def post(case, content_type, signed):
        raw, company_ids = case
        headers = {"Content-Type": content_type, **(sign(raw, WEBHOOK_SECRET) if signed else {})}
        response = session.post(f"{host.url}/api/leads", data=raw, headers=headers, timeout=30)
        assert response.status_code in (202, 400, 401, 413, 415), response.text
        assert "Traceback" not in response.text and 'File "' not in response.text
        (accepted if response.status_code == 202 else refused).update(company_ids)

    post()

    assert refused, "the generator produced refusals"
    stored = set(sync_rows(database_url, sorted(accepted | refused)))
    assert stored & refused == set()
    assert stored == accepted

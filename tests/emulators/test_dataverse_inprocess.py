"""The emulator without its socket (local/emulators/dataverse/inprocess.py), as the tests' fake Dataverse
uses it: the server's answers, with the clock, ids and write listener a caller injects."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from local.emulators.dataverse.bulk import BulkSupport
from local.emulators.dataverse.errors import PAYLOAD_ERROR, QUERY_ERROR, unknown_property_form_as
from local.emulators.dataverse.inprocess import InProcessApi
from local.emulators.dataverse.schema import profile_schema
from local.emulators.dataverse.store import LeadStore, Rule

BASE = "https://org.example.crm.dynamics.com"
LEADS = f"{BASE}/api/data/v9.2/leads"
NOON = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
JSON = {"Content-Type": "application/json", "Prefer": "return=representation"}


class Ids:
    def __init__(self) -> None:
        self.issued = 0

    def __call__(self) -> str:
        self.issued += 1
        return f"00000000-0000-4000-8000-{self.issued:012d}"


def emulator(**store: Any) -> InProcessApi:
    return InProcessApi(LeadStore(profile_schema("mvp", "hnt_domain"), **store), BASE, BulkSupport(True))


def test_a_create_takes_its_id_and_timestamps_from_the_caller() -> None:
    api = emulator(clock=lambda: NOON, new_id=Ids())

    created = api.handle("POST", LEADS + "?$select=leadid,createdon", JSON, json.dumps({"subject": "s"}).encode())

    assert created.status == 201 and created.payload is not None
    assert created.payload["leadid"] == "00000000-0000-4000-8000-000000000001"
    assert created.payload["createdon"] == "2030-01-01T12:00:00Z"


def test_a_query_reads_its_url_and_headers_as_the_server_does() -> None:
    api = emulator()
    for domain in ("a.example", "b.example"):
        api.handle("PATCH", f"{LEADS}(hnt_domain='{domain}')", JSON, json.dumps({"subject": domain}).encode())

    page = api.handle("GET", LEADS + "?$select=hnt_domain&$filter=hnt_domain%20eq%20'B.EXAMPLE'",
                      {"prefer": "odata.maxpagesize=1"}, b"")

    assert page.status == 200 and page.payload is not None
    assert [r["hnt_domain"] for r in page.payload["value"]] == ["b.example"]
    assert api.handle("GET", f"{BASE}/elsewhere", {}, b"").status == 404


def test_writes_are_told_once_their_transaction_commits() -> None:
    told: list[tuple[str, bool]] = []
    store = LeadStore(profile_schema("mvp"), new_id=Ids(), on_write=lambda r, created: told.append((r["subject"],
                                                                                                     created)))
    api = InProcessApi(store, BASE, BulkSupport(True))
    store.add_rule(Rule("hnt_provider", "Rejected", 400, "0x80040265", "no"))
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.lead", "subject": "one"},
               {"@odata.type": "Microsoft.Dynamics.CRM.lead", "subject": "two", "hnt_provider": "Rejected"}]
    action = LEADS + "/Microsoft.Dynamics.CRM.UpsertMultiple"

    refused = api.handle("POST", action, JSON, json.dumps({"Targets": targets}).encode())
    assert refused.status == 400 and told == []  # rolled back: nothing was written

    accepted = api.handle("POST", action, JSON, json.dumps({"Targets": targets[:1] * 2}).encode())
    assert accepted.status == 204 and told == [("one", True), ("one", True)]


@pytest.mark.parametrize("form", [PAYLOAD_ERROR, QUERY_ERROR])
def test_the_form_of_an_unknown_column_is_the_callers_own(form: str) -> None:
    api = emulator()
    with unknown_property_form_as(form):
        refused = api.handle("POST", LEADS, JSON, json.dumps({"hnt_nosuchcolumn": 1}).encode())
    assert refused.payload is not None and refused.payload["error"]["code"] == form
    after = api.handle("POST", LEADS, JSON, json.dumps({"hnt_nosuchcolumn": 1}).encode())
    assert after.payload is not None and after.payload["error"]["code"] == PAYLOAD_ERROR  # the global default

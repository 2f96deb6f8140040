"""Reading the leads changed since a time (docs/dataverse.md 11.4): comparisons on dates and numbers,
`$orderby=modifiedon asc,leadid asc`, and pages of a server limit a test lowers, followed by
`@odata.nextLink`; over HTTP and in-process."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from local.emulators.dataverse import serve
from local.emulators.dataverse.bulk import BulkSupport
from local.emulators.dataverse.inprocess import InProcessApi
from local.emulators.dataverse.queryoptions import PageLimit
from local.emulators.dataverse.schema import profile_schema
from local.emulators.dataverse.store import LeadStore
from tests.emulators.conftest import Api, error_of
from tests.fakes.dataverse import guid_order

BASE = "https://org.example.crm.dynamics.com"
LEADS = f"{BASE}/api/data/v9.2/leads"
COLUMNS = "leadid,_ownerid_value,_masterid_value,statecode,statuscode,merged,modifiedon,hnt_companyid"
ORDER = "modifiedon asc,leadid asc"
START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _in_process(clock: Clock, page_size: int = 5000) -> InProcessApi:
    store = LeadStore(profile_schema("mvp"), clock=clock)
    return InProcessApi(store, BASE, BulkSupport(True), PageLimit(page_size))


def _create(api: InProcessApi, company: int) -> str:
    reply = api.handle("POST", LEADS + "?$select=leadid", {"Prefer": "return=representation"},
                       json.dumps({"subject": f"c{company}", "hnt_companyid": company}).encode())
    assert reply.status == 201 and reply.payload is not None
    return reply.payload["leadid"]


def _rows(api: InProcessApi, where: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    reply = api.handle("GET", f"{LEADS}?$select=hnt_companyid&$filter={quote(where)}&$orderby={quote(ORDER)}",
                       headers or {}, b"")
    assert reply.status == 200, reply.payload
    assert reply.payload is not None
    return reply.payload


def _companies(payload: dict[str, Any]) -> list[int]:
    return [row["hnt_companyid"] for row in payload["value"]]


@pytest.fixture
def hourly() -> InProcessApi:
    """Companies 1..4 written at 09:00, 10:00, 11:00 and 12:00."""
    clock = Clock()
    api = _in_process(clock)
    for company in range(1, 5):
        _create(api, company)
        clock.now += timedelta(hours=1)
    return api


@pytest.mark.parametrize(
    ("where", "companies"),
    [
        ("modifiedon ge 2026-12-03T10:00:00Z", [2, 3, 4]),
        ("modifiedon gt 2026-12-03T10:00:00Z", [3, 4]),
        ("modifiedon lt 2026-12-03T10:00:00Z", [1]),
        ("modifiedon le 2026-12-03T10:00:00Z", [1, 2]),
        ("modifiedon eq 2026-12-03T10:00:00Z", [2]),
        ("modifiedon ne 2026-12-03T10:00:00Z", [1, 3, 4]),
        ("modifiedon ge 2026-12-03T11:00:00+01:00", [2, 3, 4]),  # an offset is an instant, not text
        ("modifiedon gt 2026-12-03T09:59:59.5Z", [2, 3, 4]),
        ("modifiedon ge 2026-12-03T10:00Z and modifiedon lt 2026-12-03T12:00:00Z", [2, 3]),
        ("modifiedon lt 2026-12-03T10:00:00Z or modifiedon gt 2026-12-03T11:00:00Z", [1, 4]),
        ("(hnt_companyid ge 2 and hnt_companyid le 3) or hnt_companyid gt 3.5", [2, 3, 4]),
        ("hnt_companyid lt 2 or (createdon ge 2026-12-03T12:00:00Z and statecode eq 0)", [1, 4]),
    ],
)
def test_comparisons_on_dates_and_numbers(hourly: InProcessApi, where: str, companies: list[int]) -> None:
    assert _companies(_rows(hourly, where)) == companies


def test_a_date_against_a_text_column_is_refused(hourly: InProcessApi) -> None:
    reply = hourly.handle("GET", f"{LEADS}?$filter={quote('subject ge 2026-12-03T10:00:00Z')}", {}, b"")

    assert reply.status == 400 and reply.payload is not None
    assert "'Edm.String' and 'Edm.DateTimeOffset'" in reply.payload["error"]["message"]


def test_modifiedon_then_leadid_orders_changes_made_in_the_same_second() -> None:
    clock = Clock()
    api = _in_process(clock)
    ids = [_create(api, company) for company in range(1, 6)]
    clock.now += timedelta(seconds=1)
    api.handle("PATCH", f"{LEADS}({ids[0]})", {}, json.dumps({"subject": "later"}).encode())

    rows = _rows(api, "modifiedon ge 2026-12-03T09:00:00Z")["value"]

    same_second = sorted(ids[1:], key=guid_order)
    assert [row["leadid"] for row in rows] == [*same_second, ids[0]]


def test_in_process_pages_of_the_server_limit_follow_next_links() -> None:
    clock = Clock()
    api = _in_process(clock, page_size=2)
    for company in range(1, 6):
        _create(api, company)
        clock.now += timedelta(minutes=1)

    first = _rows(api, "modifiedon ge 2026-12-03T09:01:00Z", {"Prefer": "odata.maxpagesize=5000"})
    second = api.handle("GET", first["@odata.nextLink"], {"Prefer": "odata.maxpagesize=5000"}, b"")

    assert _companies(first) == [2, 3]
    assert second.payload is not None and _companies(second.payload) == [4, 5]
    assert "@odata.nextLink" not in second.payload
    assert ("Preference-Applied", "odata.maxpagesize=2") in second.headers


# -- over HTTP -----------------------------------------------------------------------------------


@pytest.fixture
def small_pages() -> Iterator[Api]:
    server = serve("127.0.0.1", 0, max_page_size=3)
    yield Api(server)
    server.shutdown()


def _follow(api: Api, params: dict[str, str], headers: dict[str, str] | None = None) -> list[list[dict]]:
    pages = []
    response = api.get("leads", params=params, headers=headers or {})
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["value"])
        if "@odata.nextLink" not in body:
            return pages
        response = api.session.get(body["@odata.nextLink"], headers=headers or {}, timeout=5)


def test_every_changed_lead_once_in_pages_of_the_server_limit(small_pages: Api) -> None:
    api = small_pages
    ids = [api.create(subject=f"c{company}", hnt_companyid=company) for company in range(1, 9)]
    for lead_id in ids[:3]:
        api.patch(f"leads({lead_id})", json={"statecode": 2, "statuscode": 6})
    since = api.get(f"leads({ids[0]})?$select=createdon").json()["createdon"]
    params = {"$select": COLUMNS, "$filter": f"modifiedon ge {since} and hnt_companyid ge 2", "$orderby": ORDER}

    pages = _follow(api, params)

    rows = [row for page in pages for row in page]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert sorted(row["hnt_companyid"] for row in rows) == list(range(2, 9))
    assert [row["modifiedon"] for row in rows] == sorted(row["modifiedon"] for row in rows)
    assert all(set(row) == {"@odata.etag", *COLUMNS.split(",")} for row in rows)
    assert {row["leadid"]: row["statuscode"] for row in rows if row["statecode"] == 2} == {ids[1]: 6, ids[2]: 6}


def test_a_smaller_page_asked_for_is_kept_and_a_larger_one_capped(small_pages: Api) -> None:
    api = small_pages
    for company in range(5):
        api.create(subject=f"c{company}")

    asked_two = _follow(api, {"$select": "subject"}, {"Prefer": "odata.maxpagesize=2"})
    asked_more = api.get("leads", params={"$select": "subject"}, headers={"Prefer": "odata.maxpagesize=4000"})

    assert [len(page) for page in asked_two] == [2, 2, 1]
    assert len(asked_more.json()["value"]) == 3 and asked_more.headers["Preference-Applied"] == "odata.maxpagesize=3"
    assert len(api.get("leads", params={"$top": "4"}).json()["value"]) == 4  # $top is one answer


def test_the_page_limit_is_set_by_the_control_api_and_restored_by_reset(api: Api) -> None:
    for company in range(3):
        api.create(subject=f"c{company}")

    assert api.control("GET", "paging").json() == {"max_page_size": 5000}
    assert api.control("POST", "paging", {"max_page_size": 2}).json() == {"max_page_size": 2}
    assert [len(page) for page in _follow(api, {"$select": "subject"})] == [2, 1]
    assert api.control("POST", "paging", {"max_page_size": 0}).status_code == 400
    assert api.control("POST", "paging", {"max_page_size": 5001}).status_code == 400
    assert api.control("POST", "reset").status_code == 204
    assert api.control("GET", "paging").json() == {"max_page_size": 5000}


def test_a_page_limit_out_of_range_is_refused_at_start() -> None:
    with pytest.raises(ValueError):
        serve("127.0.0.1", 0, max_page_size=0)


def test_a_skiptoken_of_another_order_is_refused(small_pages: Api) -> None:
    api = small_pages
    for company in range(4):
        api.create(subject=f"c{company}")
    link = api.get("leads", params={"$orderby": ORDER}).json()["@odata.nextLink"]

    response = api.session.get(link.replace("modifiedon%20asc", "createdon%20asc"), timeout=5)

    assert error_of(response) == (400, "0x0", "The $skiptoken query option value is not valid.")

"""Retrieve, delete, query with $filter/$select/$top, WhoAmI, routing and authentication."""
from __future__ import annotations

import uuid

import pytest
import requests

from local.emulators import tokens
from tests.emulators.conftest import ODATA_HEADERS, Api, error_of


def test_get_by_id_with_select(api: Api) -> None:
    lead_id = api.create(subject="S", emailaddress1="a@b.com", companyname="C")

    response = api.get(f"leads({lead_id})?$select=subject,emailaddress1")

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "@odata.context": f"{api.base}/$metadata#leads(subject,emailaddress1)/$entity",
        "@odata.etag": body["@odata.etag"],
        "subject": "S",
        "emailaddress1": "a@b.com",
        "leadid": lead_id,
    }
    assert response.headers["ETag"] == body["@odata.etag"]


def test_get_without_select_returns_every_column(api: Api) -> None:
    lead_id = api.create(subject="S")

    body = api.get(f"leads({lead_id})").json()

    assert body["subject"] == "S" and body["companyname"] is None and body["hnt_commercialheat"] is None
    assert body["versionnumber"] and body["createdon"].endswith("Z")


def test_conditional_get_is_304_while_unchanged(api: Api) -> None:
    lead_id = api.create(subject="S")
    etag = api.get(f"leads({lead_id})").headers["ETag"]

    assert api.get(f"leads({lead_id})", headers={"If-None-Match": etag}).status_code == 304
    api.patch(f"leads({lead_id})", json={"subject": "T"})
    assert api.get(f"leads({lead_id})", headers={"If-None-Match": etag}).status_code == 200


def test_get_by_alternate_key_and_missing_records(api: Api) -> None:
    lead_id = api.create(hnt_domain="k.example")
    missing = str(uuid.uuid4())

    assert api.get("leads(hnt_domain='K.EXAMPLE')?$select=leadid").json()["leadid"] == lead_id
    assert error_of(api.get(f"leads({missing})")) == (404, "0x80040217", f"lead With Id = {missing} Does Not Exist")
    assert error_of(api.get("leads(hnt_domain='none')"))[:2] == (404, "0x80060891")


def test_delete(api: Api) -> None:
    lead_id = api.create(subject="S")

    first = api.delete(f"leads({lead_id})")
    second = api.delete(f"leads({lead_id})")

    assert first.status_code == 204
    assert error_of(second)[:2] == (404, "0x80040217")
    assert api.records() == []


def _query(api: Api, **params: str) -> requests.Response:
    return api.get("leads", params=params)


def test_query_filters_case_insensitively_with_escaped_quotes(api: Api) -> None:
    obryan = api.create(lastname="O'Bryan", emailaddress1="Ob@Example.com")
    smith = api.create(lastname="Smith", websiteurl="https://smith.example")
    api.create(lastname="Other")

    response = _query(
        api,
        **{"$select": "leadid,lastname",
           "$filter": "emailaddress1 eq 'OB@example.COM' or websiteurl eq 'https://SMITH.example'"},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"] == f"{api.base}/$metadata#leads(leadid,lastname)"
    assert [(r["leadid"], r["lastname"]) for r in body["value"]] == [(obryan, "O'Bryan"), (smith, "Smith")]
    assert all(r["@odata.etag"].startswith('W/"') for r in body["value"])
    quoted = _query(api, **{"$select": "lastname", "$filter": "lastname eq 'o''bryan'"}).json()["value"]
    assert [(r["leadid"], r["lastname"]) for r in quoted] == [(obryan, "O'Bryan")]


def test_query_combines_and_or_not_and_numbers(api: Api) -> None:
    a = api.create(hnt_companyid=1, hnt_segment=100000000, subject="a")
    b = api.create(hnt_companyid=2, hnt_segment=100000001, subject="b")
    api.create(hnt_companyid=3, subject="c")

    where = "(hnt_companyid eq 1 or hnt_companyid eq 2) and not (hnt_segment eq 100000001) or subject eq 'B'"
    value = _query(api, **{"$select": "subject", "$filter": where}).json()["value"]

    assert [r["leadid"] for r in value] == [a, b]
    assert [r["subject"] for r in _query(api, **{"$filter": "hnt_segment eq null"}).json()["value"]] == ["c"]


def test_query_sees_updates_and_deletes(api: Api) -> None:
    lead_id = api.create(emailaddress1="old@x.com")
    assert len(_query(api, **{"$filter": "emailaddress1 eq 'old@x.com'"}).json()["value"]) == 1

    api.patch(f"leads({lead_id})", json={"emailaddress1": "new@x.com"})
    assert _query(api, **{"$filter": "emailaddress1 eq 'old@x.com'"}).json()["value"] == []
    assert len(_query(api, **{"$filter": "emailaddress1 eq 'NEW@x.com'"}).json()["value"]) == 1

    api.control("DELETE", f"leads/{lead_id}")
    assert _query(api, **{"$filter": "emailaddress1 eq 'new@x.com'"}).json()["value"] == []


def test_query_top_and_empty_results(api: Api) -> None:
    for n in range(5):
        api.create(subject=f"s{n}")

    assert [r["subject"] for r in _query(api, **{"$select": "subject", "$top": "2"}).json()["value"]] == ["s0", "s1"]
    assert _query(api, **{"$filter": "subject eq 'none'"}).json()["value"] == []
    assert error_of(_query(api, **{"$top": "x"}))[:2] == (400, "0x0")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"$select": "leadid,Name"}, "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.lead'."),
        ({"$filter": "Name eq 'x'"}, "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.lead'."),
        ({"$filter": "lastname eq 'O'Bryan'"}, "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."),
    ],
)
def test_query_errors(api: Api, params: dict, message: str) -> None:
    assert error_of(_query(api, **params)) == (400, "0x0", message)


def test_whoami(api: Api) -> None:
    for path in ("WhoAmI", "WhoAmI()"):
        response = api.get(path)
        assert response.status_code == 200
        assert int(response.headers["x-ms-dop-hint"]) > 0
        body = response.json()
        assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
        assert all(uuid.UUID(body[k]) for k in ("BusinessUnitId", "UserId", "OrganizationId"))

    assert error_of(api.post("WhoAmI")) == (
        404, "", f"No HTTP resource was found that matches the request URI '{api.base}/WhoAmI'."
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "Leads", 404, "0x8006088a"),
        ("GET", "accounts(00000000-0000-0000-0000-000000000001)", 404, "0x8006088a"),
        ("GET", "leads?$apply=aggregate($count as n)", 501, "0x0"),
        ("PATCH", "leads", 405, "0x0"),
        ("GET", "leads(not-a-guid)", 400, "0x0"),
    ],
)
def test_routing_errors(api: Api, method: str, path: str, status: int, code: str) -> None:
    response = api.request(method, path, json={})

    assert error_of(response)[:2] == (status, code)
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"


def test_unknown_entity_set_message(api: Api) -> None:
    assert error_of(api.get("Leads"))[2] == "Resource not found for the segment 'Leads'."


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer garbage",
        "Bearer " + tokens.mint("https://other.crm.dynamics.com", subject="s", app_id="a", ttl_seconds=60)[0],
    ],
    ids=["missing", "basic", "garbage", "wrong-audience"],
)
def test_requests_without_a_valid_token_get_401_with_a_challenge(api: Api, authorization: str | None) -> None:
    headers = dict(ODATA_HEADERS)
    if authorization:
        headers["Authorization"] = authorization

    response = requests.post(f"{api.base}/leads", json={"subject": "x"}, headers=headers, timeout=5)

    assert response.status_code == 401
    assert response.content == b""
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization_uri=https://login.microsoftonline.com/")
    assert challenge.endswith(f"/oauth2/authorize, resource_id={api.server.resource}/")
    assert api.records() == []


def test_an_expired_token_is_refused(api: Api) -> None:
    token, _ = tokens.mint(api.server.resource, subject="s", app_id="a", ttl_seconds=-1)

    response = requests.get(f"{api.base}/WhoAmI", headers={"Authorization": f"Bearer {token}"}, timeout=5)

    assert response.status_code == 401

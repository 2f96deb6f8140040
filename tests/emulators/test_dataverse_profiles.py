"""Schema profiles and serve() options."""
from __future__ import annotations

from typing import Iterator

import pytest

from local.emulators.dataverse import serve
from tests.emulators.conftest import Api

BARE = {"leadid", "subject", "companyname", "websiteurl", "emailaddress1", "description", "firstname", "lastname",
        "fullname", "jobtitle", "telephone1", "leadsourcecode", "statecode", "statuscode", "createdon", "modifiedon",
        "versionnumber", "ownerid", "merged", "masterid"}
MVP = {"hnt_companyid", "hnt_domain", "hnt_finalscore", "hnt_m365fitscore", "hnt_priorityscore", "hnt_provider",
       "hnt_infrasummary", "hnt_referralid", "hnt_segment", "hnt_huntertenantsize", "hnt_source",
       "hnt_processingstatus", "hnt_referraltype"}
FULL = {"hnt_prioritycategory", "hnt_prioritylabel", "hnt_technicalheat", "hnt_commercialsegment",
        "hnt_commercialheat", "hnt_ispartnercenterreferral"}


@pytest.fixture
def started() -> Iterator[list]:
    servers: list = []
    yield servers
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize(("profile", "columns"), [("bare", BARE), ("mvp", BARE | MVP), ("full", BARE | MVP | FULL)])
def test_profiles_define_their_columns(started: list, profile: str, columns: set) -> None:
    started.append(serve("127.0.0.1", 0, profile=profile))
    api = Api(started[-1])

    value = api.get("EntityDefinitions(LogicalName='lead')/Attributes?$select=LogicalName").json()["value"]

    assert {item["LogicalName"] for item in value} == columns
    assert api.get("EntityDefinitions(LogicalName='lead')/Keys").json()["value"] == []


def test_an_integer_alternate_key_and_a_custom_resource(started: list) -> None:
    started.append(serve("127.0.0.1", 0, alternate_key="hnt_companyid", resource="https://org.crm.dynamics.com/"))
    api = Api(started[-1])

    response = api.patch("leads(hnt_companyid=7)?$select=leadid", json={"subject": "s"},
                         headers={"Prefer": "return=representation"})

    assert response.status_code == 201
    assert api.records()[0]["hnt_companyid"] == 7
    assert api.patch("leads(hnt_companyid='7')", json={}).status_code == 400


@pytest.mark.parametrize(("profile", "key"), [("nope", None), ("bare", "hnt_domain"), ("mvp", "description")])
def test_bad_options_are_refused(profile: str, key: str | None) -> None:
    with pytest.raises(ValueError):
        serve("127.0.0.1", 0, profile=profile, alternate_key=key)

"""Where the emulator is as strict as Dataverse on reads: $orderby, paging, $count, refused query
options, formatted values, Microsoft.Dynamics.CRM.In, and a request id on every response."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.emulators.conftest import ODATA_HEADERS, Api, error_of

LEAD_TYPE = "Microsoft.Dynamics.CRM.lead"
FORMATTED = "OData.Community.Display.V1.FormattedValue"


def _query(api: Api, headers: dict | None = None, **params: str) -> requests.Response:
    return api.get("leads", params=params, headers=headers or {})


def _subjects(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["subject"] for row in response.json()["value"]]


# -- $orderby -------------------------------------------------------------------------------------


def test_orderby_sorts_by_several_columns_each_way(api: Api) -> None:
    api.create(subject="a", hnt_companyid=2, lastname="b")
    api.create(subject="b", hnt_companyid=1, lastname="B")
    api.create(subject="c", hnt_companyid=2, lastname="A")
    api.create(subject="d", hnt_companyid=None, lastname="c")

    ascending = _query(api, **{"$select": "subject", "$orderby": "hnt_companyid,lastname desc"})
    descending = _query(api, **{"$select": "subject", "$orderby": "hnt_companyid desc, lastname asc"})

    # nulls first when ascending; strings ignore case; ties keep creation order
    assert _subjects(ascending) == ["d", "b", "a", "c"]
    assert _subjects(descending) == ["c", "a", "b", "d"]


def test_orderby_sorts_a_choice_by_its_label_not_its_value(api: Api) -> None:
    # hnt_segment: 100000000 Existing, 100000001 New, 100000002 Prospect, 100000003 Partner
    for subject, segment in (("prospect", 100000002), ("existing", 100000000), ("partner", 100000003)):
        api.create(subject=subject, hnt_segment=segment)

    assert _subjects(_query(api, **{"$orderby": "hnt_segment"})) == ["existing", "partner", "prospect"]


def test_orderby_sorts_guids_as_sql_server_does_not_as_text(api: Api) -> None:
    # SQL Server weighs the last group most: text order would be a, b, c.
    a = api.create(leadid="00000000-0000-0000-0000-000000000002", subject="a")
    b = api.create(leadid="10000000-0000-0000-0000-000000000001", subject="b")
    c = api.create(leadid="20000000-0000-0000-0000-000000000000", subject="c")

    response = _query(api, **{"$select": "subject", "$orderby": "leadid"})

    assert [row["leadid"] for row in response.json()["value"]] == [c, b, a]


@pytest.mark.parametrize(
    ("orderby", "expected"),
    [
        ("Subject", (400, "0x0", f"Could not find a property named 'Subject' on type '{LEAD_TYPE}'.")),
        ("subject,nosuch desc", (400, "0x0", f"Could not find a property named 'nosuch' on type '{LEAD_TYPE}'.")),
        ("subject up", (400, "0x0", "Syntax error at position 8 in 'subject up'.")),
        ("subject,", (400, "0x0", "Expression expected at position 8 in 'subject,'.")),
    ],
)
def test_orderby_columns_are_checked(api: Api, orderby: str, expected: tuple) -> None:
    assert error_of(_query(api, **{"$orderby": orderby})) == expected


# -- paging ---------------------------------------------------------------------------------------


def _pages(api: Api, page_size: int, **params: str) -> list[list[str]]:
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    response = _query(api, headers, **params)
    pages = []
    while True:
        assert response.status_code == 200, response.text
        assert response.headers["Preference-Applied"] == f"odata.maxpagesize={page_size}"
        body = response.json()
        pages.append([row["subject"] for row in body["value"]])
        link = body.get("@odata.nextLink")
        if link is None:
            return pages
        response = api.session.get(link, headers=headers, timeout=5)


def test_paging_follows_next_links_to_the_end(api: Api) -> None:
    for n in range(5):
        api.create(subject=f"s{n}", hnt_companyid=n % 2)

    assert _pages(api, 2, **{"$select": "subject"}) == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    ordered = _pages(api, 2, **{"$select": "subject", "$orderby": "hnt_companyid desc,subject desc",
                                "$filter": "subject ne 's2'"})
    assert ordered == [["s3", "s1"], ["s4", "s0"]]


def test_next_link_keeps_the_query_and_carries_a_paging_cookie(api: Api) -> None:
    for n in range(3):
        api.create(subject=f"s{n}")
    params = {"$select": "subject", "$filter": "startswith(subject,'s')", "$orderby": "subject", "$count": "true"}

    body = _query(api, {"Prefer": "odata.maxpagesize=1"}, **params).json()

    link = urlsplit(body["@odata.nextLink"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"{api.base}/leads"
    query = {name: values[0] for name, values in parse_qs(link.query).items()}
    assert {name: query[name] for name in params} == params
    assert query["$skiptoken"].startswith('<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22')
    assert body["@odata.count"] == 3


def test_a_page_continues_after_its_last_row_even_when_rows_change_between_pages(api: Api) -> None:
    ids = [api.create(subject=f"s{n}") for n in range(4)]
    headers = {"Prefer": "odata.maxpagesize=2"}
    first = _query(api, headers, **{"$select": "subject", "$orderby": "subject"}).json()

    api.delete(f"leads({ids[1]})")  # the last row of the first page
    api.create(subject="s0a")  # sorts before the cursor: not seen again

    second = api.session.get(first["@odata.nextLink"], headers=headers, timeout=5).json()
    assert [row["subject"] for row in second["value"]] == ["s2", "s3"]


def test_top_limits_rows_unless_a_page_size_is_preferred(api: Api) -> None:
    for n in range(4):
        api.create(subject=f"s{n}")

    top_only = _query(api, **{"$top": "3"})
    both = _query(api, {"Prefer": "odata.maxpagesize=2"}, **{"$top": "1"})

    assert _subjects(top_only) == ["s0", "s1", "s2"] and "@odata.nextLink" not in top_only.json()
    assert "Preference-Applied" not in top_only.headers
    assert _subjects(both) == ["s0", "s1"] and "@odata.nextLink" in both.json()


@pytest.mark.parametrize("prefer", ["odata.maxpagesize=5001", "odata.maxpagesize=x", "odata.maxpagesize=0"])
def test_page_sizes_dataverse_ignores(api: Api, prefer: str) -> None:
    api.create(subject="s")

    response = _query(api, {"Prefer": prefer})

    assert _subjects(response) == ["s"] and "Preference-Applied" not in response.headers


def test_a_made_up_skiptoken_is_refused(api: Api) -> None:
    response = _query(api, **{"$skiptoken": "<cookie pagenumber=\"2\" />"})

    assert error_of(response) == (400, "0x0", "The $skiptoken query option value is not valid.")


# -- $count ---------------------------------------------------------------------------------------


def test_count_is_every_match_whatever_the_top(api: Api) -> None:
    for n in range(3):
        api.create(subject=f"s{n}")

    body = _query(api, **{"$count": "true", "$top": "1", "$filter": "subject ne 's0'"}).json()

    assert list(body) == ["@odata.context", "@odata.count", "value"]
    assert body["@odata.count"] == 2 and len(body["value"]) == 1
    assert "@odata.count" not in _query(api, **{"$count": "false"}).json()
    assert error_of(_query(api, **{"$count": "yes"})) == (400, "0x0", "'yes' is not a valid count option.")


# -- refused query options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "option"),
    [
        ("leads", {"$skip": "1"}, "$skip"),
        ("leads", {"$top": "1", "$skip": "1"}, "$skip"),
        ("leads", {"$search": "x"}, "$search"),
        ("leads", {"$foo": "1"}, "$foo"),
        ("leads", {"$Select": "subject"}, "$Select"),
        ("leads(00000000-0000-0000-0000-000000000001)", {"$top": "1"}, "$top"),
        ("leads(00000000-0000-0000-0000-000000000001)", {"$filter": "subject eq 'x'"}, "$filter"),
        ("EntityDefinitions(LogicalName='lead')/Attributes", {"$top": "1"}, "$top"),
        ("EntityDefinitions(LogicalName='lead')/Attributes", {"$orderby": "LogicalName"}, "$orderby"),
    ],
)
def test_query_options_dataverse_does_not_take_are_refused(api: Api, path: str, params: dict, option: str) -> None:
    expected = (400, "0x80060888", f"The query parameter {option} is not supported")

    assert error_of(api.get(path, params=params)) == expected


def test_expand_on_leads_names_an_unknown_property(api: Api) -> None:
    assert error_of(_query(api, **{"$expand": "parentaccountid($select=name)"})) == (
        400, "0x0", f"Could not find a property named 'parentaccountid' on type '{LEAD_TYPE}'."
    )


def test_custom_options_and_aliases_are_not_system_options(api: Api) -> None:
    api.create(subject="s")

    assert _subjects(_query(api, **{"debug": "1", "@p1": "'s'", "$filter": "subject eq @p1"})) == ["s"]


# -- formatted values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "applied"),
    [
        ('"*"', '"*"'),
        (f'"{FORMATTED}"', f'"{FORMATTED}"'),
        ("OData.Community.Display.V1.*", '"OData.Community.Display.V1.*"'),
    ],
)
def test_formatted_values_for_choices_booleans_and_numbers(api: Api, annotations: str, applied: str) -> None:
    lead_id = api.create(subject="s", leadsourcecode=8, hnt_ispartnercenterreferral=True, hnt_companyid=1234567)

    response = api.get(f"leads({lead_id})", headers={"Prefer": f"odata.include-annotations={annotations}"})

    body = response.json()
    assert body[f"leadsourcecode@{FORMATTED}"] == "Web" and body["leadsourcecode"] == 8
    assert body[f"hnt_ispartnercenterreferral@{FORMATTED}"] == "Yes"
    assert body[f"hnt_companyid@{FORMATTED}"] == "1,234,567"
    assert body[f"statecode@{FORMATTED}"] == "Open" and body[f"statuscode@{FORMATTED}"] == "New"
    assert f"subject@{FORMATTED}" not in body and f"hnt_segment@{FORMATTED}" not in body  # text; null
    keys = list(body)
    assert keys.index(f"leadsourcecode@{FORMATTED}") == keys.index("leadsourcecode") - 1
    assert response.headers["Preference-Applied"] == f"odata.include-annotations={applied}"


def test_formatted_values_in_queries_and_representations_only_when_asked(api: Api) -> None:
    api.create(subject="s", hnt_segment=100000001)
    both = {"Prefer": 'odata.maxpagesize=10,odata.include-annotations="*"'}

    row = _query(api, both, **{"$select": "hnt_segment"}).json()["value"][0]
    plain = _query(api, **{"$select": "hnt_segment"}).json()["value"][0]
    created = api.post("leads", json={"hnt_segment": 100000002},
                       headers={"Prefer": 'return=representation,odata.include-annotations="*"'})
    excluded = _query(api, {"Prefer": 'odata.include-annotations="-*"'}).json()["value"][0]

    assert row[f"hnt_segment@{FORMATTED}"] == "New" and f"hnt_segment@{FORMATTED}" not in plain
    assert created.status_code == 201
    assert created.json()[f"hnt_segment@{FORMATTED}"] == "Prospect"
    assert created.headers["Preference-Applied"] == 'return=representation,odata.include-annotations="*"'
    assert not any("@" in key and not key.startswith("@") for key in excluded)


def test_no_304_when_annotations_are_asked_for(api: Api) -> None:
    lead_id = api.create(subject="s")
    etag = api.get(f"leads({lead_id})").headers["ETag"]

    annotated = api.get(f"leads({lead_id})", headers={"If-None-Match": etag, "Prefer": 'odata.include-annotations="*"'})

    assert annotated.status_code == 200


# -- Microsoft.Dynamics.CRM.In --------------------------------------------------------------------


def test_in_finds_every_listed_value_case_insensitively(api: Api) -> None:
    a = api.create(emailaddress1="A@x.com", hnt_companyid=1)
    b = api.create(emailaddress1="b@x.com", hnt_companyid=2)
    api.create(emailaddress1="c@x.com", hnt_companyid=3)

    double = "Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=[\"a@X.com\",\"B@x.com\"])"
    single = "Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=['a@x.com','nobody@x.com'])"
    numbers = "Microsoft.Dynamics.CRM.In(PropertyName='hnt_companyid',PropertyValues=[\"2\",\"3\"])"
    numbers += " and hnt_companyid ne 3"
    aliased = {"$filter": "Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)",
               "@p1": "'emailaddress1'", "@p2": "['b@x.com']"}

    def found(**params: str) -> list[str]:
        response = _query(api, **{"$select": "leadid", **params})
        assert response.status_code == 200, response.text
        return [row["leadid"] for row in response.json()["value"]]

    assert found(**{"$filter": double}) == [a, b]
    assert found(**{"$filter": single + " or hnt_companyid eq 2"}) == [a, b]
    assert found(**{"$filter": numbers}) == [b]
    assert found(**aliased) == [b]
    assert len(found(**{"$filter": double.replace(".In(", ".NotIn(")})) == 1


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Microsoft.Dynamics.CRM.In(PropertyName='nosuch',PropertyValues=[\"a\"])",
         (400, "0x80041103",
          "'lead' entity doesn't contain attribute with Name = 'nosuch' and NameMapping = 'Logical'.")),
        ("Microsoft.Dynamics.CRM.In(PropertyName='hnt_companyid',PropertyValues=[\"x\"])",
         (400, "0x0", "Cannot convert the literal 'x' to the expected type 'Edm.Int32'.")),
        ("Microsoft.Dynamics.CRM.Between(PropertyName='hnt_companyid',PropertyValues=[\"1\",\"2\"])",
         (501, "0x0",
          "The query function 'Microsoft.Dynamics.CRM.Between' is not implemented by the local Dataverse emulator.")),
    ],
)
def test_in_errors(api: Api, where: str, expected: tuple) -> None:
    assert error_of(_query(api, **{"$filter": where})) == expected


# -- literal types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("hnt_companyid eq '86'", "Found operand types 'Edm.Int32' and 'Edm.String' for operator kind 'Equal'."),
        ("emailaddress1 ne 86", "Found operand types 'Edm.String' and 'Edm.Int32' for operator kind 'NotEqual'."),
        ("leadid eq '00000000-0000-0000-0000-000000000001'",
         "Found operand types 'Edm.Guid' and 'Edm.String' for operator kind 'Equal'."),
        ("hnt_ispartnercenterreferral eq 1",
         "Found operand types 'Edm.Boolean' and 'Edm.Int32' for operator kind 'Equal'."),
        ("createdon gt '2026-01-01T00:00:00Z'",
         "Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind 'GreaterThan'."),
        ("hnt_companyid eq @p1", "Found operand types 'Edm.Int32' and 'Edm.String' for operator kind 'Equal'."),
    ],
)
def test_a_literal_of_another_type_is_refused_not_silently_unmatched(api: Api, where: str, message: str) -> None:
    status, code, text = error_of(_query(api, **{"$filter": where, "@p1": "'86'"}))

    assert (status, code) == (400, "0x0")
    assert text == f"A binary operator with incompatible types was detected. {message}"


def test_literals_of_the_column_type_match(api: Api) -> None:
    lead_id = api.create(subject="s", hnt_companyid=86, hnt_ispartnercenterreferral=True)
    where = (f"hnt_companyid eq 86 and hnt_companyid lt 86.5 and leadid eq {lead_id} and "
             "hnt_ispartnercenterreferral eq true and createdon gt 2000-01-01T00:00:00Z and versionnumber gt 1")

    assert _subjects(_query(api, **{"$filter": where})) == ["s"]
    assert error_of(_query(api, **{"$filter": "contains(hnt_companyid,'8')"}))[2].startswith(
        "No function signature for the function with name 'contains' matches the specified arguments."
    )


# -- request ids ----------------------------------------------------------------------------------


def test_every_response_carries_a_new_service_request_id(api: Api) -> None:
    lead_id = api.create(subject="s")
    responses = [
        api.get(f"leads({lead_id})"),
        api.get("leads", params={"$skip": "1"}),
        api.get("Leads"),
        api.patch(f"leads({uuid.uuid4()})", json={}, headers={"If-Match": "*"}),
        requests.get(f"{api.base}/WhoAmI", headers=ODATA_HEADERS, timeout=5),  # 401
    ]

    ids = [response.headers["x-ms-service-request-id"] for response in responses]
    assert [r.status_code for r in responses] == [200, 400, 404, 404, 401]
    assert all(uuid.UUID(i) for i in ids) and len(set(ids)) == len(ids)
    assert all(response.headers["REQ_ID"] == i for response, i in zip(responses, ids, strict=True))


def test_an_emulator_bug_is_a_500_not_a_dropped_connection(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the emulator")

    monkeypatch.setattr(api.server.store, "query", broken)

    response = _query(api)

    assert error_of(response) == (500, "0x80040216", "An unexpected error occurred.")
    assert uuid.UUID(response.headers["x-ms-service-request-id"])

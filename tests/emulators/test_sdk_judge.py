"""A judge none of us wrote: Microsoft's own Python client (`powerplatform-dataverse-client`) against
the emulator, for every verb of the subset lead push uses.

The SDK refuses anything but https, so the emulator serves TLS here with the certificates
`authority.write_certificates` makes, trusted through REQUESTS_CA_BUNDLE as the app's tests do. The
credential mints an emulator token for the audience the SDK asks for (`<url>/.default` minus the
suffix, as azure-identity does), so the scope it sends is checked too.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError
from PowerPlatform.Dataverse.models import UpsertItem, col

from local.emulators import tokens
from local.emulators.authority import write_certificates
from local.emulators.dataverse import DataverseServer, serve

FORMATTED = "OData.Community.Display.V1.FormattedValue"


class EmulatorCredential:
    """An azure-core TokenCredential whose tokens the emulator accepts."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        assert len(scopes) == 1 and scopes[0].endswith("/.default"), scopes
        token, expires_on = tokens.mint(scopes[0].removesuffix("/.default"), subject="sdk-judge",
                                        app_id="sdk-judge", ttl_seconds=600)
        return AccessToken(token, expires_on)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataverseServer, Path]]:
    certs = write_certificates(tmp_path_factory.mktemp("dataverse-tls"))
    server = serve("127.0.0.1", 0, profile="full", alternate_key="hnt_domain", tls=certs)
    yield server, certs.ca_bundle
    server.shutdown()


@pytest.fixture
def server(tls_server: tuple[DataverseServer, Path], monkeypatch: pytest.MonkeyPatch) -> DataverseServer:
    server, ca_bundle = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_bundle))
    assert requests.post(f"{server.url}/_emulator/reset", timeout=5).status_code == 204
    return server


@pytest.fixture
def credential() -> EmulatorCredential:
    return EmulatorCredential()


@pytest.fixture
def client(server: DataverseServer, credential: EmulatorCredential) -> Iterator[DataverseClient]:
    with DataverseClient(server.url, credential) as client:
        yield client


def _records(server: DataverseServer) -> list[dict]:
    return requests.get(f"{server.url}/_emulator/leads", timeout=5).json()["value"]


def test_the_sdk_refuses_plain_http_so_the_emulator_serves_tls(server: DataverseServer) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    with pytest.raises(ValueError, match="HTTPS"):
        DataverseClient(server.url.replace("https://", "http://"), EmulatorCredential())


def test_create_then_retrieve_by_id_with_formatted_values(
    client: DataverseClient, server: DataverseServer, credential: EmulatorCredential
) -> None:
    # "Web" is a label: the SDK reads the picklist metadata and sends the option value.
    lead_id = client.records.create("lead", {"subject": "S", "companyname": "Contoso", "leadsourcecode": "Web",
                                              "hnt_companyid": 86})

    record = client.records.retrieve("lead", lead_id, select=["subject", "leadsourcecode", "hnt_companyid"],
                                     include_annotations=FORMATTED)

    assert record is not None
    assert record["leadid"] == lead_id == str(uuid.UUID(lead_id))  # the id the SDK read back is the canonical GUID
    assert (record["subject"], record["leadsourcecode"], record["hnt_companyid"]) == ("S", 8, 86)
    assert record[f"leadsourcecode@{FORMATTED}"] == "Web"
    assert record.etag and record.etag.startswith('W/"')
    assert [r["companyname"] for r in _records(server)] == ["Contoso"]
    assert client.records.retrieve("lead", str(uuid.uuid4())) is None  # a 404 is "not found" to the SDK
    assert set(credential.scopes) == {(f"{server.url}/.default",)}


def test_update_by_id_and_a_missing_record(client: DataverseClient, server: DataverseServer) -> None:
    lead_id = client.records.create("lead", {"subject": "before"})

    client.records.update("lead", lead_id, {"subject": "after", "hnt_segment": 100000001})
    missing = str(uuid.uuid4())
    with pytest.raises(HttpError) as raised:
        client.records.update("lead", missing, {"subject": "x"})  # If-Match: *, so never a create

    [record] = _records(server)
    assert (record["subject"], record["hnt_segment"]) == ("after", 100000001)
    error = raised.value
    assert (error.status_code, error.details["service_error_code"]) == (404, "0x80040217")
    assert uuid.UUID(error.details["service_request_id"])
    assert str(error) == f"lead With Id = {missing} Does Not Exist"


def test_query_with_filter_select_orderby_and_top(client: DataverseClient) -> None:
    for n, email in enumerate(["a@x.com", "b@x.com", "c@x.com", "a@x.com"]):
        client.records.create("lead", {"subject": f"s{n}", "emailaddress1": email, "hnt_companyid": n})

    by_text = client.records.list("lead", filter="emailaddress1 eq 'A@X.COM'", select=["subject"],
                                  orderby=["hnt_companyid desc"])
    built = (client.query.builder("lead").select("subject", "emailaddress1")
             .where(col("emailaddress1").in_(["a@x.com", "c@x.com"]))
             .order_by("emailaddress1", descending=True).order_by("hnt_companyid").top(2).execute())

    assert [r["subject"] for r in by_text] == ["s3", "s0"]
    assert [(r["subject"], r["emailaddress1"]) for r in built] == [("s2", "c@x.com"), ("s0", "a@x.com")]


def test_paging_and_count(client: DataverseClient) -> None:
    for n in range(5):
        client.records.create("lead", {"subject": f"s{n}", "hnt_companyid": n})

    pages = list(client.records.list_pages("lead", select=["subject"], orderby=["hnt_companyid desc"], page_size=2,
                                           count=True))
    everything = client.records.list("lead", select=["subject"], filter="hnt_companyid ge 1", page_size=3)

    assert [[r["subject"] for r in page] for page in pages] == [["s4", "s3"], ["s2", "s1"], ["s0"]]
    assert sorted(r["subject"] for r in everything) == ["s1", "s2", "s3", "s4"]


def test_upsert_by_alternate_key_creates_then_updates(client: DataverseClient, server: DataverseServer) -> None:
    item = UpsertItem(alternate_key={"hnt_domain": "contoso.com"}, record={"subject": "first"})

    client.records.upsert("lead", [item])
    client.records.upsert("lead", [UpsertItem(alternate_key={"hnt_domain": "CONTOSO.com"},
                                              record={"subject": "second"})])

    assert [(r["hnt_domain"], r["subject"]) for r in _records(server)] == [("contoso.com", "second")]


def test_bulk_create_update_and_upsert(client: DataverseClient, server: DataverseServer) -> None:
    ids = client.records.create("lead", [{"subject": "a", "hnt_domain": "a.com"}, {"subject": "b"}])
    client.records.update("lead", ids, {"companyname": "Both"})
    client.records.upsert("lead", [
        UpsertItem(alternate_key={"hnt_domain": "a.com"}, record={"subject": "a2"}),
        UpsertItem(alternate_key={"hnt_domain": "new.com"}, record={"subject": "n"}),
    ])

    records = {r["subject"]: r for r in _records(server)}
    assert len(ids) == 2 and {records["a2"]["leadid"], records["b"]["leadid"]} == set(ids)
    assert records["a2"]["companyname"] == records["b"]["companyname"] == "Both"
    assert records["n"]["hnt_domain"] == "new.com" and len(records) == 3


def test_a_refused_query_reaches_the_caller_as_dataverse_worded_it(client: DataverseClient) -> None:
    with pytest.raises(HttpError) as raised:
        client.records.list("lead", orderby=["nosuch asc"])

    assert (raised.value.status_code, raised.value.details["service_error_code"]) == (400, "0x0")
    assert str(raised.value) == "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.lead'."


def test_batch_with_a_change_set_and_continue_on_error(client: DataverseClient, server: DataverseServer) -> None:
    existing = client.records.create("lead", {"subject": "old"})
    missing = str(uuid.uuid4())
    batch = client.batch.new()
    batch.records.create("lead", {"subject": "solo"})
    with batch.changeset() as change_set:
        change_set.records.create("lead", {"subject": "in the set"})
        change_set.records.update("lead", existing, {"subject": "updated in the set"})
    batch.records.update("lead", missing, {"subject": "nowhere"})  # 404: If-Match: *
    batch.records.retrieve("lead", existing, select=["subject"])

    result = batch.execute(continue_on_error=True)

    assert [response.status_code for response in result.responses] == [204, 204, 204, 404, 200]
    assert result.failed[0].error_code == "0x80040217"
    assert result.responses[-1].data is not None and result.responses[-1].data["subject"] == "updated in the set"
    assert sorted(r["subject"] for r in _records(server)) == ["in the set", "solo", "updated in the set"]
    assert len(result.entity_ids) == 3


def test_metadata_reads_by_logical_name_and_by_metadata_id(client: DataverseClient) -> None:
    table = client.tables.get("lead")  # EntityDefinitions?$filter=LogicalName eq 'lead'
    columns = client.tables.list_columns("lead")  # EntityDefinitions(<MetadataId>)/Attributes
    email = client.tables.get_column("lead", "emailaddress1")  # EntityDefinitions(<MetadataId>)/Attributes(...)
    [key] = client.tables.get_alternate_keys("lead")

    assert table is not None and (table.entity_set_name, table.primary_id_attribute) == ("leads", "leadid")
    assert uuid.UUID(table.metadata_id)
    assert {"emailaddress1", "hnt_segment", "leadsourcecode"} <= {c["LogicalName"] for c in columns}
    assert email["MaxLength"] == 100 and email["@odata.type"] == "#Microsoft.Dynamics.CRM.StringAttributeMetadata"
    assert (key.key_attributes, key.status) == (["hnt_domain"], "Active")

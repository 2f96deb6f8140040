"""`POST $batch`: parts in order, change sets all or nothing, continue-on-error, Content-ID references."""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from PowerPlatform.Dataverse.client import DataverseClient

from local.emulators.authority import write_certificates
from local.emulators.dataverse import DataverseServer, serve
from tests.emulators.conftest import Api, error_of
from tests.emulators.test_sdk_judge import EmulatorCredential

API = "/api/data/v9.2"


@dataclass(frozen=True)
class Part:
    status: int
    headers: dict[str, str]
    body: dict | None
    content_id: str | None = None


@pytest.fixture(scope="module")
def sdk_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataverseServer, Path]]:
    """An emulator over TLS, as Microsoft's client insists (see test_sdk_judge.py), and its CA bundle."""
    certs = write_certificates(tmp_path_factory.mktemp("dataverse-batch-tls"))
    server = serve("127.0.0.1", 0, profile="full", alternate_key="hnt_domain", tls=certs)
    yield server, certs.ca_bundle
    server.shutdown()


@pytest.fixture
def sdk_server(sdk_tls: tuple[DataverseServer, Path], monkeypatch: pytest.MonkeyPatch) -> DataverseServer:
    server, ca_bundle = sdk_tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_bundle))
    assert requests.post(f"{server.url}/_emulator/reset", timeout=5).status_code == 204
    return server


@pytest.fixture
def sdk_client(sdk_server: DataverseServer) -> Iterator[DataverseClient]:
    with DataverseClient(sdk_server.url, EmulatorCredential()) as client:
        yield client


def _sdk_records(server: DataverseServer) -> list[dict]:
    return requests.get(f"{server.url}/_emulator/leads", timeout=5).json()["value"]


def request_part(method: str, url: str, body: dict | None = None, content_id: str | None = None,
                 headers: dict[str, str] | None = None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += ["", json.dumps(body) if body is not None else ""]
    return "\r\n".join(lines)


def change_set(*parts: str, boundary: str = "changeset_1") -> str:
    inner = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}"


def send(api: Api, *parts: str, prefer: str | None = None, boundary: str = "batch_AAA123") -> requests.Response:
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if prefer:
        headers["Prefer"] = prefer
    return api.post("$batch", data=body.encode(), headers=headers)


def parse(response: requests.Response) -> list[Part | list[Part]]:
    """The answered parts in order; a change set's parts as a list."""
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/mixed; boundary=batchresponse_"), content_type
    return _parts(response.content.decode(), content_type.split("boundary=")[1])


def _parts(text: str, boundary: str) -> list[Part | list[Part]]:
    pieces = ("\r\n" + text).split(f"\r\n--{boundary}")
    assert pieces[-1].startswith("--"), "no closing delimiter"
    found: list[Part | list[Part]] = []
    for piece in pieces[1:-1]:
        head, _, content = piece.removeprefix("\r\n").partition("\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.split("\r\n"))
        if headers["Content-Type"].startswith("multipart/mixed"):
            found.append(_parts(content, headers["Content-Type"].split("boundary=")[1]))  # type: ignore[arg-type]
            continue
        status_line, _, rest = content.partition("\r\n")
        inner_head, _, body = rest.partition("\r\n\r\n")
        inner = dict(line.split(": ", 1) for line in inner_head.split("\r\n") if line)
        status = int(re.match(r"HTTP/1\.1 (\d{3})", status_line).group(1))
        found.append(Part(status, inner, json.loads(body) if body.strip() else None, headers.get("Content-ID")))
    return found


def test_requests_outside_change_sets_are_answered_in_order(api: Api) -> None:
    response = send(
        api,
        request_part("POST", f"{API}/leads", {"subject": "one"}),
        request_part("POST", f"{api.base}/leads", {"subject": "two"}),
        request_part("POST", "leads", {"subject": "three"}),
        request_part("GET", "leads?$select=subject"),
    )

    assert response.status_code == 200
    assert response.headers["OData-Version"] == "4.0"
    *creates, query = parse(response)
    assert [part.status for part in creates] == [204, 204, 204]
    ids = [part.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")") for part in creates]
    assert all(part.headers["Location"] == part.headers["OData-EntityId"] for part in creates)
    assert query.status == 200 and [r["subject"] for r in query.body["value"]] == ["one", "two", "three"]
    assert sorted(r["leadid"] for r in api.records()) == sorted(ids)


def test_a_change_set_is_answered_inside_its_own_boundary_with_content_ids(api: Api) -> None:
    response = send(api, change_set(
        request_part("POST", f"{API}/leads", {"subject": "a"}, content_id="1"),
        request_part("POST", f"{API}/leads", {"subject": "b"}, content_id="2"),
    ))

    assert response.status_code == 200
    [answered] = parse(response)
    assert [(part.status, part.content_id) for part in answered] == [(204, "1"), (204, "2")]
    assert sorted(r["subject"] for r in api.records()) == ["a", "b"]


def test_a_failing_request_rolls_its_change_set_back(api: Api) -> None:
    existing = api.create(subject="before")
    api.control("POST", "rules", {"column": "subject", "equals": "bad", "status": 400, "code": "0x80040265",
                                  "message": "Plug-in rejected the lead"})

    response = send(api, change_set(
        request_part("PATCH", f"{API}/leads({existing})", {"subject": "after"}, content_id="1"),
        request_part("POST", f"{API}/leads", {"subject": "new"}, content_id="2"),
        request_part("POST", f"{API}/leads", {"subject": "bad"}, content_id="3"),
    ))

    assert response.status_code == 400
    [failed] = parse(response)
    assert (failed.status, failed.content_id) == (400, "3")
    assert failed.body == {"error": {"code": "0x80040265", "message": "Plug-in rejected the lead"}}
    assert "REQ_ID" in failed.headers
    assert [(r["leadid"], r["subject"]) for r in api.records()] == [(existing, "before")]


def test_without_continue_on_error_processing_stops_at_the_first_failure(api: Api) -> None:
    response = send(
        api,
        request_part("POST", f"{API}/leads", {"subject": "first"}),
        request_part("POST", f"{API}/leads", {"subject": "x" * 301}),
        request_part("POST", f"{API}/leads", {"subject": "third"}),
    )

    assert response.status_code == 400
    first, failed = parse(response)
    assert first.status == 204
    assert (failed.status, failed.body["error"]["code"]) == (400, "0x80044331")
    assert [r["subject"] for r in api.records()] == ["first"]


def test_with_continue_on_error_every_part_is_answered(api: Api) -> None:
    api.control("POST", "rules", {"column": "subject", "equals": "bad", "status": 400, "code": "0x80040265",
                                  "message": "Plug-in rejected the lead"})

    response = send(
        api,
        request_part("POST", f"{API}/leads", {"subject": "x" * 301}),
        change_set(request_part("POST", f"{API}/leads", {"subject": "bad"}, content_id="1")),
        request_part("POST", f"{API}/leads", {"subject": "third"}),
        prefer="odata.continue-on-error",
    )

    assert response.status_code == 200
    too_long, rejected, third = parse(response)
    assert (too_long.status, rejected.status, rejected.content_id, third.status) == (400, 400, "1", 204)
    assert [r["subject"] for r in api.records()] == ["third"]


def test_inner_requests_follow_the_single_request_rules(api: Api) -> None:
    lead_id = api.create(subject="s")
    stale = 'W/"1"'

    response = send(
        api,
        request_part("PATCH", f"{API}/leads({lead_id})", {"subject": "t"}, headers={"If-Match": stale}),
        request_part("PATCH", f"{API}/leads({uuid.uuid4()})", {"subject": "t"}, headers={"If-Match": "*"}),
        request_part("PATCH", f"{API}/leads(hnt_domain='new.com')", {"subject": "by key"},
                     headers={"Prefer": "return=representation"}),
        prefer="odata.continue-on-error",
    )

    mismatch, missing, created = parse(response)
    assert (mismatch.status, missing.status, created.status) == (412, 404, 201)
    assert created.body["subject"] == "by key"


def test_content_id_references_in_a_change_set(api: Api) -> None:
    response = send(api, change_set(
        request_part("POST", f"{API}/leads", {"subject": "created"}, content_id="1"),
        request_part("PATCH", "$1", {"companyname": "Referenced"}, content_id="2"),
    ))

    assert response.status_code == 200, response.text
    [record] = api.records()
    assert (record["subject"], record["companyname"]) == ("created", "Referenced")


def test_an_undeclared_content_id_reference_fails(api: Api) -> None:
    response = send(api, change_set(request_part("PATCH", "$1", {"subject": "x"}, content_id="2")))

    [failed] = parse(response)
    assert failed.status == 400
    assert failed.body["error"]["message"] == "Content-ID Reference: '$1' does not exist in the batch context."


def test_a_bulk_action_inside_a_batch(api: Api) -> None:
    targets = {"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.lead", "subject": "bulk"}]}

    response = send(api, request_part("POST", f"{API}/leads/Microsoft.Dynamics.CRM.CreateMultiple", targets))

    [answer] = parse(response)
    assert answer.status == 200 and len(answer.body["Ids"]) == 1
    assert [r["subject"] for r in api.records()] == ["bulk"]


def test_malformed_batches_are_refused(api: Api) -> None:
    lf_only = "--b\nContent-Type: application/http\n\nGET leads HTTP/1.1\n\n\n--b--\n"
    bare_lf = api.post("$batch", data=lf_only.encode(), headers={"Content-Type": "multipart/mixed; boundary=b"})
    not_multipart = api.post("$batch", json={})
    get_in_change_set = send(api, change_set(request_part("GET", "leads")))
    nested = send(api, request_part("POST", f"{API}/$batch"))

    assert error_of(bare_lf)[:2] == (400, "0x80048d19")
    assert "Stream was not readable" in error_of(bare_lf)[2]
    assert error_of(not_multipart)[:2] == (400, "0x80048d19")
    assert error_of(get_in_change_set)[0] == 400
    assert parse(nested)[0].status == 400


def test_at_most_1000_requests(api: Api) -> None:
    parts = [request_part("GET", "WhoAmI")] * 1001

    assert error_of(send(api, *parts))[0] == 400


def test_a_batch_is_one_request_and_faults_apply_to_it_whole(api: Api) -> None:
    api.control("POST", "stats/reset")
    api.control("POST", "faults", {"script": [{"status": 503}]})

    unavailable = send(api, request_part("POST", f"{API}/leads", {"subject": "a"}))
    answered = send(api, request_part("POST", f"{API}/leads", {"subject": "a"}),
                    request_part("POST", f"{API}/leads", {"subject": "b"}))

    assert unavailable.status_code == 503 and answered.status_code == 200
    assert len(api.records()) == 2
    stats = api.control("GET", "stats").json()
    assert (stats["requests"], stats["by_kind"]["POST $batch"], stats["by_kind"]["POST leads"]) == (2, 2, 0)


# Microsoft's own client as a judge of the $batch dialect: it builds the multipart body and parses the answer.
def test_microsofts_client_reads_a_batch_with_a_change_set(sdk_client: DataverseClient, sdk_server: DataverseServer
                                                           ) -> None:
    existing = sdk_client.records.create("lead", {"subject": "existing"})
    batch = sdk_client.batch.new()
    batch.records.create("lead", {"subject": "single"})
    with batch.changeset() as change_set:
        reference = change_set.records.create("lead", {"subject": "in set"})
        change_set.records.update("lead", reference, {"companyname": "Referenced"})
    batch.records.update("lead", existing, {"subject": "updated"})

    result = batch.execute()

    assert not result.has_errors and [r.status_code for r in result.responses] == [204, 204, 204, 204]
    records = {r["subject"]: r for r in _sdk_records(sdk_server)}
    assert records["in set"]["companyname"] == "Referenced" and set(records) == {"single", "in set", "updated"}


def test_microsofts_client_sees_a_failed_change_set_and_continue_on_error(
    sdk_client: DataverseClient, sdk_server: DataverseServer
) -> None:
    requests.post(f"{sdk_server.url}/_emulator/rules", json={"column": "subject", "equals": "bad", "status": 400,
                                                             "code": "0x80040265", "message": "Rejected"}, timeout=5)
    batch = sdk_client.batch.new()
    with batch.changeset() as change_set:
        change_set.records.create("lead", {"subject": "rolled back"})
        change_set.records.create("lead", {"subject": "bad"})
    batch.records.create("lead", {"subject": "after"})

    result = batch.execute(continue_on_error=True)

    assert [(r.status_code, r.error_code) for r in result.responses] == [(400, "0x80040265"), (204, None)]
    assert result.responses[0].error_message == "Rejected"
    assert [r["subject"] for r in _sdk_records(sdk_server)] == ["after"]

"""A person in the CRM (local/emulators/dataverse/people.py): edit, qualify, disqualify, reopen, delete
and merge through the control API, through the fake Dataverse, and the same record from both."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from local.emulators.control_client import EmulatorControl
from local.emulators.dataverse.errors import ODataError
from local.emulators.dataverse.lifecycle import DEFAULT_OWNER_ID, MERGED_STATE, MERGED_STATUS, STATUS_MISMATCH_CODE
from tests.emulators.conftest import Api, error_of
from tests.fakes.clock import FakeClock
from tests.fakes.dataverse import FakeDataverse

OUTCOME = ["leadid", "statecode", "statuscode", "_ownerid_value", "merged", "_masterid_value", "modifiedon"]


def _act(api: Api, method: str, path: str, body: Any = None) -> dict:
    response = api.control(method, path, body)
    assert response.status_code == 200, response.text
    return response.json()


def _etag(api: Api, lead_id: str) -> str:
    return api.get(f"leads({lead_id})?$select=leadid").headers["ETag"]


def _state(record: dict) -> tuple:
    return record["statecode"], record["statuscode"]


# -- the control API --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body", "state"),
    [
        ("qualify", None, (1, 3)),
        ("disqualify", None, (2, 4)),
        ("disqualify", {"status": 6}, (2, 6)),
    ],
)
def test_a_person_closes_a_lead_and_its_etag_changes(api: Api, action: str, body: Any, state: tuple) -> None:
    lead_id = api.create(subject="s")
    before = _etag(api, lead_id)

    record = _act(api, "POST", f"leads/{lead_id}/{action}", body)

    assert _state(record) == state and record["subject"] == "s"
    assert _etag(api, lead_id) == f'W/"{record["versionnumber"]}"' != before
    assert _state(api.get(f"leads({lead_id})").json()) == state


def test_a_closed_lead_is_reopened_and_a_closed_lead_cannot_be_qualified(api: Api) -> None:
    lead_id = api.create(subject="s")
    _act(api, "POST", f"leads/{lead_id}/disqualify", {"status": 5})

    refused = api.control("POST", f"leads/{lead_id}/qualify")
    reopened = _act(api, "POST", f"leads/{lead_id}/reopen")

    assert refused.status_code == 400 and "The lead is closed" in refused.json()["error"]
    assert _state(reopened) == (0, 1)
    assert _state(_act(api, "POST", f"leads/{lead_id}/qualify")) == (1, 3)


@pytest.mark.parametrize("body", [{"status": 3}, {"status": 1}])
def test_a_disqualification_takes_only_a_disqualified_status(api: Api, body: dict) -> None:
    lead_id = api.create(subject="s")
    before = _etag(api, lead_id)

    refused = api.control("POST", f"leads/{lead_id}/disqualify", body)

    assert refused.status_code == 400 and refused.json()["error"].startswith(STATUS_MISMATCH_CODE)
    assert _etag(api, lead_id) == before


def test_a_person_edits_columns_and_assigns_the_lead(api: Api) -> None:
    lead_id = api.create(subject="s", companyname="Hunter's name")
    owner = str(uuid.uuid4())
    before = _etag(api, lead_id)

    record = _act(api, "PATCH", f"leads/{lead_id}", {"companyname": "The rep's name", "ownerid": owner})

    assert (record["companyname"], record["_ownerid_value"], record["subject"]) == ("The rep's name", owner, "s")
    assert _etag(api, lead_id) != before
    assert api.control("PATCH", f"leads/{lead_id}", {"nosuchcolumn": 1}).status_code == 400
    assert api.control("PATCH", f"leads/{lead_id}", {"ownerid": "me"}).status_code == 400
    assert api.control("GET", f"leads/{lead_id}").json()["companyname"] == "The rep's name"


def test_a_person_deletes_a_lead(api: Api) -> None:
    lead_id = api.create(subject="s")

    assert api.control("DELETE", f"leads/{lead_id}").status_code == 204

    assert api.control("GET", f"leads/{lead_id}").status_code == 404
    assert error_of(api.get(f"leads({lead_id})"))[:2] == (404, "0x80040217")


@pytest.mark.parametrize("action", ["qualify", "disqualify", "reopen", "merge"])
def test_an_action_on_a_missing_lead_is_404(api: Api, action: str) -> None:
    other = api.create(subject="s")

    response = api.control("POST", f"leads/{uuid.uuid4()}/{action}", {"into": other})

    assert response.status_code == 404 and response.json()["error"].startswith("0x80040217")


def test_a_merge_deactivates_the_subordinate_and_points_it_at_the_master(api: Api) -> None:
    master = api.create(subject="master", companyname="M")
    subordinate = api.create(subject="subordinate", companyname="S")
    master_before = api.get(f"leads({master})").json()

    answer = _act(api, "POST", f"leads/{subordinate}/merge", {"into": master})

    sub = api.get(f"leads({subordinate})?$select={','.join(OUTCOME)},subject").json()
    assert (sub["statecode"], sub["statuscode"], sub["merged"], sub["_masterid_value"]) == (
        MERGED_STATE, MERGED_STATUS, True, master)
    assert sub["subject"] == "subordinate"
    assert answer["subordinate"]["versionnumber"] > answer["master"]["versionnumber"]
    master_after = api.get(f"leads({master})").json()
    changed = {name for name in master_after if master_after[name] != master_before[name]}
    assert changed - {"modifiedon"} == {"@odata.etag", "versionnumber"}  # modifiedon moves when a second passed
    assert api.get(f"leads?$filter=_masterid_value eq {master}&$select=leadid").json()["value"][0]["leadid"] == \
        subordinate


def test_merges_that_are_refused_and_a_chain_that_is_not(api: Api) -> None:
    a, b, c = (api.create(subject=name) for name in "abc")

    assert api.control("POST", f"leads/{a}/merge", {"into": a}).status_code == 400
    assert api.control("POST", f"leads/{a}/merge", {}).status_code == 400
    _act(api, "POST", f"leads/{a}/merge", {"into": b})
    assert api.control("POST", f"leads/{a}/merge", {"into": c}).status_code == 400  # already merged
    assert api.control("POST", f"leads/{c}/merge", {"into": a}).status_code == 400  # into a merged lead

    _act(api, "POST", f"leads/{b}/merge", {"into": c})  # the master of a is itself merged now

    masters = {r["subject"]: r["_masterid_value"] for r in api.records()}
    assert masters == {"a": b, "b": c, "c": None}


# -- the fake Dataverse, in-process -------------------------------------------------------------------


def test_the_fakes_person_moves_modifiedon_and_the_version_and_is_told_as_a_write() -> None:
    clock = FakeClock()
    fake = FakeDataverse(clock)
    master = fake.add_record({"subject": "master"})
    lead_id = fake.add_record({"subject": "s"})
    told: list[str] = []
    fake.on_write = lambda write: told.append(write.lead_id)
    versions = [fake.records[lead_id]["versionnumber"]]

    for minutes, act in enumerate([lambda: fake.qualify(lead_id), lambda: fake.reopen(lead_id),
                                   lambda: fake.disqualify(lead_id, status=7), lambda: fake.reopen(lead_id),
                                   lambda: fake.edit(lead_id, {"ownerid": master}),
                                   lambda: fake.merge(lead_id, into=master)], start=1):
        clock.advance(60)
        act()
        versions.append(fake.records[lead_id]["versionnumber"])
        assert fake.records[lead_id]["modifiedon"] == f"2030-01-01T00:{minutes:02d}:00Z"

    assert versions == sorted(set(versions))
    assert told == [lead_id] * 5 + [master, lead_id]
    read = fake.get_lead(lead_id, select=OUTCOME)
    assert (read["statecode"], read["statuscode"], read["merged"], read["_masterid_value"]) == (2, 7, True, master)
    assert read["_ownerid_value"] == master and read["modifiedon"] == "2030-01-01T00:06:00Z"


def test_the_fakes_person_is_refused_as_the_emulator_refuses() -> None:
    fake = FakeDataverse()
    lead_id = fake.add_record({"subject": "s"})
    fake.qualify(lead_id)

    with pytest.raises(ODataError) as closed:
        fake.qualify(lead_id)
    with pytest.raises(ODataError) as mismatch:
        fake.disqualify(lead_id, status=2)
    with pytest.raises(ODataError) as missing:
        fake.merge(str(uuid.uuid4()), into=lead_id)

    assert [e.value.status for e in (closed, mismatch, missing)] == [400, 400, 404]
    assert mismatch.value.code == STATUS_MISMATCH_CODE


# -- contract: the fake's person and the control API's leave the same records -------------------------

Script = list[tuple[str, str, dict[str, Any]]]
SCRIPT: Script = [
    ("edit", "a", {"companyname": "Edited", "ownerid": "0b5e0000-0000-4000-8000-000000000001"}),
    ("qualify", "a", {}),
    ("disqualify", "b", {"status": 6}),
    ("reopen", "b", {}),
    ("disqualify", "b", {}),
    ("merge", "c", {"into": "d"}),
    ("edit", "d", {"subject": "master, edited"}),
    ("delete", "e", {}),
]


def _through_control(control: EmulatorControl) -> Callable[[str, str, dict[str, Any]], None]:
    def act(action: str, lead_id: str, options: dict[str, Any]) -> None:
        {"edit": lambda: control.edit_lead(lead_id, **options),
         "qualify": lambda: control.qualify_lead(lead_id),
         "disqualify": lambda: control.disqualify_lead(lead_id, **options),
         "reopen": lambda: control.reopen_lead(lead_id),
         "merge": lambda: control.merge_lead(lead_id, **options),
         "delete": lambda: control.delete_lead(lead_id)}[action]()
    return act


def _through_fake(fake: FakeDataverse) -> Callable[[str, str, dict[str, Any]], None]:
    def act(action: str, lead_id: str, options: dict[str, Any]) -> None:
        {"edit": lambda: fake.edit(lead_id, options),
         "qualify": lambda: fake.qualify(lead_id),
         "disqualify": lambda: fake.disqualify(lead_id, **options),
         "reopen": lambda: fake.reopen(lead_id),
         "merge": lambda: fake.merge(lead_id, **options),
         "delete": lambda: fake.delete(lead_id)}[action]()
    return act


def _play(create: Callable[[str], str], act: Callable[[str, str, dict[str, Any]], None],
          records: Callable[[], list[dict]]) -> dict[str, dict]:
    ids = {name: create(name) for name in "abcde"}
    names = {lead_id: name for name, lead_id in ids.items()}
    for action, name, options in SCRIPT:
        if "into" in options:
            options = {"into": ids[options["into"]]}
        act(action, ids[name], options)
    played = {}
    for record in records():
        assert record["modifiedon"] >= record["createdon"]
        kept = {k: v for k, v in record.items() if k not in ("leadid", "createdon", "modifiedon")}
        kept["_masterid_value"] = names.get(kept["_masterid_value"])
        played[names[record["leadid"]]] = kept
    return played


def test_the_fakes_person_and_the_control_apis_leave_the_same_records(
    dataverse: Callable[..., EmulatorControl],
) -> None:
    control = dataverse()
    fake = FakeDataverse()

    over_http = _play(lambda name: control.create_lead(subject=name)["leadid"], _through_control(control),
                      control.leads)
    in_process = _play(lambda name: fake.add_record({"subject": name}), _through_fake(fake),
                       lambda: [dict(record) for record in fake.records.values()])

    assert over_http == in_process
    assert set(over_http) == {"a", "b", "c", "d"}
    assert {name: (r["statecode"], r["statuscode"], r["merged"], r["_masterid_value"])
            for name, r in over_http.items()} == {"a": (1, 3, False, None), "b": (2, 4, False, None),
                                                  "c": (MERGED_STATE, MERGED_STATUS, True, "d"),
                                                  "d": (0, 1, False, None)}
    assert over_http["a"]["_ownerid_value"] == "0b5e0000-0000-4000-8000-000000000001"
    assert over_http["d"]["_ownerid_value"] == DEFAULT_OWNER_ID
